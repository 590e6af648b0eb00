use actix_web::{HttpResponse, web};
use uuid::Uuid;

use crate::dto::{TransferBody, TransferDto};
use crate::error::Body;
use crate::{ApiError, ApiState, Auth, ClientContext};

#[utoipa::path(
    post, path = "/v1/ownership-transfers", tag = "ownership", operation_id = "start_transfer",
    summary = "Offer the company's ownership to a user",
    description = "The receiving user accepts with step-up; the Owner then becomes an Admin.",
    request_body = TransferBody,
    responses((status = 201, description = "A pending transfer.", body = TransferDto)),
)]
pub(crate) async fn start(
    state: web::Data<ApiState>,
    auth: Auth,
    ctx: ClientContext,
    body: Body<TransferBody>,
) -> Result<HttpResponse, ApiError> {
    let transfer = state
        .ownership
        .start(auth.actor(), body.to_user_id, &ctx.0)
        .await?;
    Ok(HttpResponse::Created().json(TransferDto::from(&transfer)))
}

#[utoipa::path(
    post, path = "/v1/ownership-transfers/{id}/accept", tag = "ownership",
    operation_id = "accept_transfer",
    summary = "Accept an ownership transfer",
    params(("id" = uuid::Uuid, Path, description = "Transfer id.")),
    responses((status = 200, description = "Completed: the caller is the Owner.", body = TransferDto)),
)]
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

#[utoipa::path(
    post, path = "/v1/ownership-transfers/{id}/cancel", tag = "ownership",
    operation_id = "cancel_transfer",
    summary = "Cancel an ownership transfer",
    params(("id" = uuid::Uuid, Path, description = "Transfer id.")),
    responses((status = 200, description = "Cancelled.", body = TransferDto)),
)]
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
