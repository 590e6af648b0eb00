//! SeaORM entities. They never leave this crate: repositories map them to domain types.

pub mod audit_alert;
pub mod audit_chain_head;
pub mod audit_checkpoint;
pub mod audit_event;
pub mod audit_review_cursor;
pub mod company;
pub mod company_change;
pub mod fiscal_credential;
pub mod incident;
pub mod incident_timeline;
pub mod login_throttle;
pub mod mfa_recovery_code;
pub mod mfa_totp;
pub mod outbox_attempt;
pub mod outbox_message;
pub mod ownership_transfer;
pub mod scheduled_job;
pub mod session;
pub mod user;
