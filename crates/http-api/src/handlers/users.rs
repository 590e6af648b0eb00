use accounts::{NewUserRequest, Password, UserPatch};
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::UserId;
use secrecy::ExposeSecret;

use crate::dto::{NewUserBody, Page, PermissionsBody, RoleBody, UserDto, UserPatchBody};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

#[utoipa::path(
    get, path = "/v1/users", tag = "users", operation_id = "list_users",
    summary = "List the company's users",
    params(crate::dto::TimePageParams),
    responses((status = 200, description = "A page of the caller's company's users, oldest first.",
               body = Page<UserDto>)),
)]
pub(crate) async fn list(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    q: web::Query<crate::dto::TimePageParams>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = q.read(accounts::AccountService::MAX_USERS_PAGE)?;
    let page = state
        .accounts
        .list_users(auth.actor(), after, limit, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.iter().map(|u| UserDto::new(u, false)).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    post, path = "/v1/users", tag = "users", operation_id = "create_user",
    summary = "Create a user",
    request_body = NewUserBody,
    responses((status = 201, description = "Created.", body = UserDto)),
)]
pub(crate) async fn create(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<NewUserBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let req = NewUserRequest {
        email: body.email,
        name: body.name,
        role: body.role,
        password: Password::new(body.password.expose_secret()),
        password_confirmation: Password::new(body.password_confirmation.expose_secret()),
    };
    let user = state
        .accounts
        .create_user(auth.actor(), req, &ctx.0)
        .await?;
    Ok(HttpResponse::Created().json(UserDto::new(&user, true)))
}

#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users", operation_id = "get_user",
    summary = "One user, with effective permissions",
    params(("id" = uuid::Uuid, Path, description = "User id.")),
    responses((status = 200, description = "The user.", body = UserDto,
        headers(("ETag" = String, description = "The user's entity tag (what administrators \
                  change: name, role, active, permissions): send it in `If-Match` to change \
                  only what you read.")))),
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .accounts
        .get_user(auth.actor(), id.into_inner(), &ctx.0)
        .await?;
    Ok(tagged_user(&user))
}

#[utoipa::path(
    patch, path = "/v1/users/{id}", tag = "users", operation_id = "update_user",
    summary = "Rename, deactivate or reactivate a user",
    description = "Deactivating a user closes its sessions at once. With `If-Match` (the \
                   `ETag` of a read), the change is made only if the user is still as read; \
                   otherwise 412 `precondition_failed` and nothing changes.",
    params(("id" = uuid::Uuid, Path, description = "User id."),
        ("If-Match" = Option<String>, Header,
            description = "`*` or the quoted `ETag` of the user the change was made on.")),
    request_body = UserPatchBody,
    responses((status = 200, description = "The user after the change.", body = UserDto,
        headers(("ETag" = String, description = "The entity tag of the user now.")))),
)]
pub(crate) async fn update(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
    req: HttpRequest,
    body: Body<UserPatchBody>,
) -> Result<HttpResponse, ApiError> {
    let if_match = super::if_match(&req)?;
    let body = body.into_inner();
    let patch = UserPatch {
        name: body.name,
        active: body.active,
        if_match,
    };
    let user = state
        .accounts
        .update_user(auth.actor(), id.into_inner(), patch, &ctx.0)
        .await?;
    Ok(tagged_user(&user))
}

#[utoipa::path(
    put, path = "/v1/users/{id}/role", tag = "users", operation_id = "change_role",
    summary = "Change a user's role",
    description = "The user's permissions become the new role's defaults. `If-Match` as for \
                   `PATCH /v1/users/{id}`.",
    params(("id" = uuid::Uuid, Path, description = "User id."),
        ("If-Match" = Option<String>, Header,
            description = "`*` or the quoted `ETag` of the user the change was made on.")),
    request_body = RoleBody,
    responses((status = 200, description = "The user after the change.", body = UserDto,
        headers(("ETag" = String, description = "The entity tag of the user now.")))),
)]
pub(crate) async fn change_role(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
    req: HttpRequest,
    body: Body<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let if_match = super::if_match(&req)?;
    let user = state
        .accounts
        .change_role(
            auth.actor(),
            id.into_inner(),
            &body.role,
            if_match.as_deref(),
            &ctx.0,
        )
        .await?;
    Ok(tagged_user(&user))
}

#[utoipa::path(
    put, path = "/v1/users/{id}/permissions", tag = "users", operation_id = "change_permissions",
    summary = "Grant or revoke permissions of a user",
    description = "`If-Match` as for `PATCH /v1/users/{id}`.",
    params(("id" = uuid::Uuid, Path, description = "User id."),
        ("If-Match" = Option<String>, Header,
            description = "`*` or the quoted `ETag` of the user the change was made on.")),
    request_body = PermissionsBody,
    responses((status = 200, description = "The user after the change.", body = UserDto,
        headers(("ETag" = String, description = "The entity tag of the user now.")))),
)]
pub(crate) async fn change_permissions(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
    req: HttpRequest,
    body: Body<PermissionsBody>,
) -> Result<HttpResponse, ApiError> {
    let if_match = super::if_match(&req)?;
    let body = body.into_inner();
    let user = state
        .accounts
        .change_permissions(
            auth.actor(),
            id.into_inner(),
            &body.grant,
            &body.revoke,
            if_match.as_deref(),
            &ctx.0,
        )
        .await?;
    Ok(tagged_user(&user))
}

/// 200 with the user (with permissions) and its `ETag`.
fn tagged_user(user: &accounts::User) -> HttpResponse {
    super::tagged(&user.tag()).json(UserDto::new(user, true))
}
