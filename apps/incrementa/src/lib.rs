//! The `incrementa` server: configuration, wiring and the command line. Library part, so the API
//! tests can build the real application on port 0.
#![forbid(unsafe_code)]

pub mod backup;
pub mod config;
pub mod startup;
