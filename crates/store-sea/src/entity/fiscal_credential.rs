use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "fiscal_credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub kind: String,
    pub rfc: String,
    pub representative_rfc: Option<String>,
    pub curp: Option<String>,
    pub legal_name: String,
    pub certificate_number: String,
    pub issuer: String,
    pub valid_from: DateTimeUtc,
    pub valid_to: DateTimeUtc,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    /// Master key version of the three envelopes.
    pub key_id: i64,
    /// Envelopes (`ev1.…`): never plaintext.
    pub certificate: String,
    pub private_key: String,
    pub password: String,
    /// Stage (30, 7, 1, 0 days) of the last expiry notice sent (VAULT-8); `None`: none yet, and
    /// what a snapshot made before the column existed loads as.
    #[serde(default)]
    pub expiry_notice: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
