//! Handlers: parse, call one use case, shape the answer.

pub(crate) mod audit;
pub(crate) mod company;
pub(crate) mod docs;
pub(crate) mod fiscal;
pub(crate) mod incidents;
pub(crate) mod me;
pub(crate) mod mfa;
pub(crate) mod ops;
pub(crate) mod ownership;
pub(crate) mod sessions;
pub(crate) mod signup;
pub(crate) mod users;
