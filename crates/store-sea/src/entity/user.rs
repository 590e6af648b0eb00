use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// Normalized (lower-case): the unique index makes emails unique case-insensitively.
    #[sea_orm(unique)]
    pub email: String,
    pub name: String,
    pub role: String,
    pub active: bool,
    pub password_hash: String,
    pub mfa_enabled: bool,
    /// Per-user grants on top of the role, as comma-separated permission names.
    pub permission_grants: String,
    /// Per-user revocations, as comma-separated permission names.
    pub permission_revokes: String,
    /// Sequence of the user's sessions; bumping it is also how a login locks the user's row.
    pub session_seq: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// After the operator's reset: the user must change the password before anything else.
    /// `None` (NULL) means no, and is what a snapshot made before the column existed loads as.
    #[serde(default)]
    pub password_change_required: Option<bool>,
    /// The user's open password reset: the id of the record that asked for it (the token is a
    /// MAC of it, never stored), and when it expires. `None` when there is none, and in a
    /// snapshot made before the columns existed.
    #[serde(default)]
    pub password_reset_id: Option<Uuid>,
    /// When the open reset's token stops working.
    #[serde(default)]
    pub password_reset_expires_at: Option<DateTimeUtc>,
    /// The user's pending change of e-mail address: the id of the record that asked for it
    /// (the code is a MAC of it, never stored), the address asked for, and when the code stops
    /// working. `None` when there is none, and in a snapshot made before the columns existed.
    #[serde(default)]
    pub email_change_id: Option<Uuid>,
    /// The address asked for.
    #[serde(default)]
    pub email_change_to: Option<String>,
    /// When the pending change's code stops working.
    #[serde(default)]
    pub email_change_expires_at: Option<DateTimeUtc>,
    /// The window in which the address the user had before a change can undo it: the id of
    /// the `user.email_changed` record that opened it (the code mailed to that address is a MAC
    /// of it, never stored), the address to restore, and when the window closes. `None` when
    /// there is none, and in a snapshot made before the columns existed.
    #[serde(default)]
    pub email_revert_id: Option<Uuid>,
    /// The address the undo restores.
    #[serde(default)]
    pub email_revert_to: Option<String>,
    /// When the undo window closes.
    #[serde(default)]
    pub email_revert_expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
