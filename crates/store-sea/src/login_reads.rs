//! A login's three reads (throttle state, user, company) in one statement.

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryResult, Statement, TryGetError,
};
use sessions::{LoginReads, LoginSubject, SessionError};

use crate::SeaStore;
use crate::accounts_repo::{to_company, to_user};
use crate::entity::{company, login_throttle, user};
use crate::sessions_repo::internal;
use crate::throttle_repo::to_state;

/// `alias."column" AS "alias_column"` for every column of `E`.
fn columns<E: EntityTrait>(alias: &str) -> Vec<String> {
    E::Column::iter()
        .map(|c| {
            let name = c.as_str();
            format!("{alias}.\"{name}\" AS \"{alias}_{name}\"")
        })
        .collect()
}

/// The model of `E` read from the columns prefixed `alias_`, or `None` when its LEFT JOIN
/// matched nothing (every column NULL). A column that does not decode is an error, never a
/// missing row: a throttle row that cannot be read must not read as "no failures".
fn joined<M: FromQueryResult>(row: &QueryResult, alias: &str) -> Result<Option<M>, DbErr> {
    match M::from_query_result_nullable(row, &format!("{alias}_")) {
        Ok(model) => Ok(Some(model)),
        Err(TryGetError::Null(_)) => Ok(None),
        Err(TryGetError::DbErr(e)) => Err(e),
    }
}

/// The statement: one row whatever matches (the LEFT JOINs hang off a one-row subquery of the
/// two keys). `users.email` and `login_throttle.key` are unique, so it is exactly one row.
fn statement(backend: DbBackend, key: &str, email: &str) -> Statement {
    let (k, e) = match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?1", "?2"),
    };
    let mut select = columns::<login_throttle::Entity>("t");
    select.extend(columns::<user::Entity>("u"));
    select.extend(columns::<company::Entity>("c"));
    let sql = format!(
        "SELECT {} FROM (SELECT CAST({k} AS TEXT) AS k, CAST({e} AS TEXT) AS e) q \
         LEFT JOIN login_throttle t ON t.\"key\" = q.k \
         LEFT JOIN users u ON u.\"email\" = q.e \
         LEFT JOIN companies c ON c.\"id\" = u.\"company_id\"",
        select.join(", ")
    );
    Statement::from_sql_and_values(backend, sql, [key.into(), email.into()])
}

#[async_trait]
impl LoginReads for SeaStore {
    async fn login_reads(
        &self,
        key: &str,
        email: &accounts::Email,
    ) -> Result<LoginSubject, SessionError> {
        let rows = self
            .db
            .query_all_raw(statement(self.backend(), key, email.as_str()))
            .await
            .map_err(internal)?;
        let [row] = rows.as_slice() else {
            return Err(internal(DbErr::Custom(format!(
                "corrupt data: {} rows for one login's key and email",
                rows.len()
            ))));
        };
        let throttle = joined::<login_throttle::Model>(row, "t")
            .map_err(internal)?
            .map(|m| to_state(&m))
            .unwrap_or_default();
        let user = joined::<user::Model>(row, "u")
            .map_err(internal)?
            .map(to_user)
            .transpose()?;
        let company = match user {
            Some(_) => joined::<company::Model>(row, "c")
                .map_err(internal)?
                .map(to_company)
                .transpose()?,
            None => None,
        };
        Ok(LoginSubject {
            throttle,
            user,
            company,
        })
    }
}
