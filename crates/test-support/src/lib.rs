//! Helpers for IncrementaCRM's own tests: a fresh database per test on SQLite and, when
//! `TEST_DATABASE_URL` is set, on PostgreSQL. Never published.
#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use sea_orm::{ConnectionTrait, DatabaseConnection};
use store_sea::PoolSettings;
use tempfile::TempDir;

/// Prefix of every database the tests create on PostgreSQL, so CI can drop leftovers.
pub const PG_TEST_DB_PREFIX: &str = "incrementa_test_";

/// One test's own database.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// `"sqlite"` or `"postgres"`, for messages.
    pub backend: &'static str,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A new SQLite file in a temporary directory (removed when dropped).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Self {
            url,
            backend: "sqlite",
            _dir: Some(dir),
        }
    }

    /// A new, empty PostgreSQL database, or `None` (with a note on stderr) when
    /// `TEST_DATABASE_URL` is not set.
    pub async fn postgres() -> Option<Self> {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run of this test");
            return None;
        };
        let name = format!("{PG_TEST_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(base.clone())
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        admin.close().await.ok();
        Some(Self {
            url: with_database(&base, &name),
            backend: "postgres",
            _dir: None,
        })
    }

    /// Another handle on an existing database (a second server process on the same data). The
    /// original handle keeps ownership of any temporary directory.
    pub fn existing(url: &str, backend: &'static str) -> Self {
        Self {
            url: url.to_owned(),
            backend,
            _dir: None,
        }
    }

    /// SQLite always, plus PostgreSQL when configured: run a contract test on each.
    pub async fn each() -> Vec<Self> {
        let mut all = vec![Self::sqlite()];
        if let Some(pg) = Self::postgres().await {
            all.push(pg);
        }
        all
    }

    /// Connects and applies migrations.
    pub async fn connect(&self) -> DatabaseConnection {
        let db = store_sea::connect(
            &self.url,
            PoolSettings {
                max_connections: 32,
                ..PoolSettings::default()
            },
        )
        .await
        .expect("connect to test database");
        store_sea::migrate(&db)
            .await
            .expect("migrate test database");
        db
    }
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let prefix = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
