use accounts::{NewUserRequest, Password, UserPatch};
use actix_web::{HttpResponse, web};
use kernel::UserId;
use secrecy::ExposeSecret;

use crate::dto::{Items, NewUserBody, PermissionsBody, RoleBody, UserDto, UserPatchBody};
use crate::{ApiError, ApiState, Auth, ClientContext};

pub(crate) async fn list(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    let users = state.accounts.list_users(auth.actor(), &ctx.0).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: users.iter().map(|u| UserDto::new(u, false)).collect(),
    }))
}

pub(crate) async fn create(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: web::Json<NewUserBody>,
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
    Ok(HttpResponse::Ok().json(UserDto::new(&user, true)))
}

pub(crate) async fn update(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
    body: web::Json<UserPatchBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let patch = UserPatch {
        name: body.name,
        active: body.active,
    };
    let user = state
        .accounts
        .update_user(auth.actor(), id.into_inner(), patch, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(UserDto::new(&user, true)))
}

pub(crate) async fn change_role(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
    body: web::Json<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .accounts
        .change_role(auth.actor(), id.into_inner(), &body.role, &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(UserDto::new(&user, true)))
}

pub(crate) async fn change_permissions(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<UserId>,
    body: web::Json<PermissionsBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = state
        .accounts
        .change_permissions(
            auth.actor(),
            id.into_inner(),
            &body.grant,
            &body.revoke,
            &ctx.0,
        )
        .await?;
    Ok(HttpResponse::Ok().json(UserDto::new(&user, true)))
}
