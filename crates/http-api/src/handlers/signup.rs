use accounts::{Password, SignupRequest};
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::dto::{CompanyDto, SignupBody};
use crate::{ApiError, ApiState, ClientContext};

pub(crate) async fn signup(
    state: web::Data<ApiState>,
    ctx: ClientContext,
    body: web::Json<SignupBody>,
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
    Ok(HttpResponse::Created().json(json!({
        "company": CompanyDto::from(&company),
        "user": {
            "id": owner.id.to_string(),
            "email": owner.email.as_str(),
            "name": owner.name.as_str(),
            "role": owner.role.as_str(),
        },
    })))
}
