use actix_web::{HttpResponse, web};
use uuid::Uuid;

use crate::dto::{TransferBody, TransferDto};
use crate::{ApiError, ApiState, Auth, ClientContext};

pub(crate) async fn start(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: web::Json<TransferBody>,
) -> Result<HttpResponse, ApiError> {
    let transfer = state
        .ownership
        .start(auth.actor(), body.to_user_id, &ctx.0)
        .await?;
    Ok(HttpResponse::Created().json(TransferDto::from(&transfer)))
}

pub(crate) async fn accept(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let transfer = state
        .ownership
        .accept(auth.actor(), id.into_inner(), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(TransferDto::from(&transfer)))
}

pub(crate) async fn cancel(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let transfer = state
        .ownership
        .cancel(auth.actor(), id.into_inner(), &ctx.0)
        .await?;
    Ok(HttpResponse::Ok().json(TransferDto::from(&transfer)))
}
