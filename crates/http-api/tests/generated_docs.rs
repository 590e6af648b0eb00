//! The generated documents in docs/ must match the code. `UPDATE_DOCS=1` rewrites them.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

fn check(name: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/{name} is stale: run `UPDATE_DOCS=1 cargo test -p http-api generated_docs` and commit it"
    );
}

#[test]
fn generated_docs_authorization_matrix_is_current() {
    check(
        "authorization-matrix.md",
        &http_api::routes::authorization_matrix_markdown(),
    );
}

#[test]
fn generated_docs_permission_catalog_is_current() {
    check("permissions.md", &rbac::catalog_markdown());
}
