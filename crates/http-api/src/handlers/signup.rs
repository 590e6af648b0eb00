use accounts::{Password, SignupRequest};
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;

use crate::dto::{CompanyDto, OwnerDto, SignupBody, SignupDto};
use crate::error::Body;
use crate::{ApiError, ApiState, ClientContext};

#[utoipa::path(
    post, path = "/v1/signup", tag = "accounts", operation_id = "signup",
    summary = "Create a company and its Owner",
    description = "Creates the company (tenant) and its first user, the Owner. The password must meet \
                   the policy (length, not breached, not the email); every broken rule is listed. \
                   Limited per client address.",
    request_body = SignupBody,
    responses((status = 201, description = "Created; log in next with `POST /v1/sessions`.", body = SignupDto)),
)]
pub(crate) async fn signup(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: Body<SignupBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let req = SignupRequest {
        company_name: body.company_name,
        email: body.email,
        password: Password::new(body.password.expose_secret()),
        password_confirmation: Password::new(body.password_confirmation.expose_secret()),
        name: body.name,
        rfc: body.rfc,
    };
    let (company, owner) = state.accounts.signup(req, &ctx.0).await?;
    Ok(HttpResponse::Created().json(SignupDto {
        company: CompanyDto::from(&company),
        user: OwnerDto {
            id: owner.id.to_string(),
            email: owner.email.as_str().to_owned(),
            name: owner.name.as_str().to_owned(),
            role: owner.role.as_str(),
        },
    }))
}
