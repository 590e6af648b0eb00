//! API tests: the real server on a random loopback port with its own database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod alerts;
mod audit;
mod backups;
mod company;
mod concurrency;
mod docs;
mod email_changes;
mod errors;
mod helpers;
mod incidents;
mod keys;
mod load;
mod matrix;
mod operations;
mod ownership;
mod password_resets;
mod rbac;
mod reliability;
mod robustness;
mod second_factor;
mod sessions;
mod signup;
mod tenancy;
mod users;
mod vault;
