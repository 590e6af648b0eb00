//! Companies (tenants), users and passwords of IncrementaCRM (ACC-1..3, PWD-1..6).
//!
//! Validating newtypes ([`Email`], [`Password`], [`Rfc`], [`PersonName`]) make invalid input
//! unrepresentable past the edge; [`PasswordPolicy`] lists every violated rule at once; and
//! [`AccountService`] holds the use cases: sign-up, user management with rank rules, password
//! change. Storage and hashing are ports ([`AccountRepository`], [`PasswordHasher`]) implemented by
//! adapter crates. This crate must never depend on a database, a web framework or a cryptographic
//! library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod email_change;
mod error;
mod model;
mod ownership;
mod password;
mod ports;
mod reset;
mod service;

pub use email_change::{
    EMAIL_CHANGE_RESEND_INTERVAL, EMAIL_CHANGE_TTL, EMAIL_REVERT_TTL, EmailChange,
    EmailChangePorts, EmailChangeRepository, EmailChangeService, EmailRevert, FactorRemoval,
};
pub use error::{AccountsError, FieldError};
pub use model::{
    Company, CompanyName, CompanyProfile, ConfigChange, Email, MFA_GRACE, NewCompany, PersonName,
    Rfc, TAX_REGIMES, User, UserPage,
};
pub use ownership::{
    OwnershipRepository, OwnershipService, OwnershipTransfer, TRANSFER_TTL, TransferStatus,
};
pub use password::{Password, PasswordHash, PasswordPolicy, PasswordViolation};
pub use ports::{
    AccountRepository, CompanyUpdate, DecideCompanyUpdate, PasswordCheck, PasswordHasher,
    RevocationReason, SessionRevocation, UserField,
};
pub use reset::{
    AcceptedReset, PasswordReset, PasswordResetRepository, PasswordResetService,
    RESET_RESEND_INTERVAL, RESET_TTL, ResetConfirmation, ResetPorts, ResetTokenVerifier,
};
pub use service::{
    AccountService, CompanyPatch, MAX_CHANGES_PAGE, NewUserRequest, STALE_ATTEMPTS, SignupRequest,
    UserPatch,
};

#[cfg(any(test, feature = "mocks"))]
pub use email_change::MockEmailChangeRepository;
#[cfg(any(test, feature = "mocks"))]
pub use ownership::MockOwnershipRepository;
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockAccountRepository, MockPasswordHasher};
#[cfg(any(test, feature = "mocks"))]
pub use reset::{MockPasswordResetRepository, MockResetTokenVerifier};
