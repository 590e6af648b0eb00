//! Schema migrations, applied in order at start (`incrementa serve`) or by `incrementa migrate`.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_rbac;
mod m0003_vault;
mod m0004_audit_chain;
mod m0005_company_config;
mod m0006_audit_alerts;
mod m0007_mfa;
mod m0008_incidents_outbox;
mod m0009_scheduled_jobs;
mod m0010_audit_head_follows;
mod m0011_session_open_capped;

/// The list of migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_rbac::Migration),
            Box::new(m0003_vault::Migration),
            Box::new(m0004_audit_chain::Migration),
            Box::new(m0005_company_config::Migration),
            Box::new(m0006_audit_alerts::Migration),
            Box::new(m0007_mfa::Migration),
            Box::new(m0008_incidents_outbox::Migration),
            Box::new(m0009_scheduled_jobs::Migration),
            Box::new(m0010_audit_head_follows::Migration),
            Box::new(m0011_session_open_capped::Migration),
        ]
    }
}
