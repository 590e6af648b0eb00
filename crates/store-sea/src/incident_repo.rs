use async_trait::async_trait;
use audit::AuditRecord;
use incidents::{
    EntryKind, Incident, IncidentError, IncidentKind, IncidentRepository, Invalid, Severity,
    Status, TimelineEntry,
};
use kernel::{CompanyId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entity::{audit_alert, incident as row, incident_timeline as line, user};
use crate::{SeaStore, corrupt};

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> IncidentError {
    crate::outage(e).map_or_else(IncidentError::internal, IncidentError::internal)
}

fn line_row(company: CompanyId, incident: Uuid, seq: i64, e: &TimelineEntry) -> line::ActiveModel {
    let (from, to, recipients) = match &e.kind {
        EntryKind::Transition { from, to } => (
            Some(from.as_str().to_owned()),
            Some(to.as_str().to_owned()),
            None,
        ),
        EntryKind::Notified { recipients } => (
            None,
            None,
            Some(i32::try_from(*recipients).unwrap_or(i32::MAX)),
        ),
        EntryKind::Created | EntryKind::Note => (None, None, None),
    };
    line::ActiveModel {
        id: Set(e.id),
        incident_id: Set(incident),
        company_id: Set(company.as_uuid()),
        seq: Set(seq),
        at: Set(e.at),
        actor_id: Set(e.actor_id.as_uuid()),
        kind: Set(e.kind.as_str().to_owned()),
        from_status: Set(from),
        to_status: Set(to),
        recipients: Set(recipients),
        note: Set(e.note.clone()),
    }
}

fn to_entry(m: line::Model) -> Result<TimelineEntry, IncidentError> {
    let status = |s: Option<&str>| {
        s.and_then(Status::parse)
            .ok_or_else(|| internal(corrupt("incident_timeline", "status")))
    };
    let kind = match m.kind.as_str() {
        "created" => EntryKind::Created,
        "note" => EntryKind::Note,
        "transition" => EntryKind::Transition {
            from: status(m.from_status.as_deref())?,
            to: status(m.to_status.as_deref())?,
        },
        "notified" => EntryKind::Notified {
            recipients: u32::try_from(m.recipients.unwrap_or(0)).unwrap_or(0),
        },
        _ => return Err(internal(corrupt("incident_timeline", "kind"))),
    };
    Ok(TimelineEntry {
        id: m.id,
        at: m.at,
        actor_id: UserId::from_uuid(m.actor_id),
        kind,
        note: m.note,
    })
}

fn to_incident(m: row::Model, timeline: Vec<TimelineEntry>) -> Result<Incident, IncidentError> {
    let bad = |what| internal(corrupt("incidents", what));
    let affected: Vec<Uuid> =
        serde_json::from_str(&m.affected_user_ids).map_err(|_| bad("affected_user_ids"))?;
    Ok(Incident {
        id: m.id,
        company_id: CompanyId::from_uuid(m.company_id),
        kind: IncidentKind::parse(&m.kind).ok_or_else(|| bad("kind"))?,
        severity: Severity::parse(&m.severity).ok_or_else(|| bad("severity"))?,
        summary: m.summary,
        status: Status::parse(&m.status).ok_or_else(|| bad("status"))?,
        affected_user_ids: affected.into_iter().map(UserId::from_uuid).collect(),
        alert_id: m.alert_id,
        created_by: UserId::from_uuid(m.created_by),
        created_at: m.created_at,
        updated_at: m.updated_at,
        timeline,
    })
}

async fn timelines<C: ConnectionTrait>(
    conn: &C,
    company: CompanyId,
    ids: Vec<Uuid>,
) -> Result<Vec<line::Model>, IncidentError> {
    line::Entity::find()
        .filter(line::Column::CompanyId.eq(company.as_uuid()))
        .filter(line::Column::IncidentId.is_in(ids))
        .order_by_asc(line::Column::IncidentId)
        .order_by_asc(line::Column::Seq)
        .all(conn)
        .await
        .map_err(internal)
}

#[async_trait]
impl IncidentRepository for SeaStore {
    async fn insert(&self, i: &Incident, audit: AuditRecord) -> Result<(), IncidentError> {
        let txn = self.write_txn().await.map_err(internal)?;
        let mut errors = Vec::new();
        if !i.affected_user_ids.is_empty() {
            let known = user::Entity::find()
                .filter(user::Column::CompanyId.eq(i.company_id.as_uuid()))
                .filter(user::Column::Id.is_in(i.affected_user_ids.iter().map(|u| u.as_uuid())))
                .count(&txn)
                .await
                .map_err(internal)?;
            if usize::try_from(known).ok() != Some(i.affected_user_ids.len()) {
                errors.push(Invalid {
                    field: "affected_user_ids",
                    code: "unknown_user",
                });
            }
        }
        if let Some(alert) = i.alert_id {
            let found = audit_alert::Entity::find_by_id(alert)
                .filter(audit_alert::Column::CompanyId.eq(i.company_id.as_uuid()))
                .count(&txn)
                .await
                .map_err(internal)?;
            if found == 0 {
                errors.push(Invalid {
                    field: "alert_id",
                    code: "unknown_alert",
                });
            }
        }
        if !errors.is_empty() {
            return Err(IncidentError::Validation(errors));
        }
        if let Some(alert) = i.alert_id {
            // The alert is handled by an incident now (AUD-7 triage): it leaves the open ones,
            // and one dismissed earlier is taken up again.
            audit_alert::Entity::update_many()
                .col_expr(
                    audit_alert::Column::Status,
                    sea_orm::sea_query::Expr::value(audit::Alert::INCIDENT),
                )
                .filter(audit_alert::Column::Id.eq(alert))
                .filter(audit_alert::Column::CompanyId.eq(i.company_id.as_uuid()))
                .exec(&txn)
                .await
                .map_err(internal)?;
        }
        let affected = serde_json::to_string(
            &i.affected_user_ids
                .iter()
                .map(|u| u.as_uuid())
                .collect::<Vec<_>>(),
        )
        .map_err(internal)?;
        row::Entity::insert(row::ActiveModel {
            id: Set(i.id),
            company_id: Set(i.company_id.as_uuid()),
            kind: Set(i.kind.as_str().to_owned()),
            severity: Set(i.severity.as_str().to_owned()),
            summary: Set(i.summary.clone()),
            status: Set(i.status.as_str().to_owned()),
            affected_user_ids: Set(affected),
            alert_id: Set(i.alert_id),
            created_by: Set(i.created_by.as_uuid()),
            created_at: Set(i.created_at),
            updated_at: Set(i.updated_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(internal)?;
        let lines: Vec<line::ActiveModel> = (1_i64..)
            .zip(&i.timeline)
            .map(|(seq, e)| line_row(i.company_id, i.id, seq, e))
            .collect();
        if !lines.is_empty() {
            line::Entity::insert_many(lines)
                .exec_without_returning(&txn)
                .await
                .map_err(internal)?;
        }
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)
    }

    async fn get(&self, company: CompanyId, id: Uuid) -> Result<Option<Incident>, IncidentError> {
        let Some(m) = crate::by_key(
            row::Entity::find_by_id(id).filter(row::Column::CompanyId.eq(company.as_uuid())),
            &self.db,
        )
        .await
        .map_err(internal)?
        else {
            return Ok(None);
        };
        let timeline = timelines(&self.db, company, vec![id])
            .await?
            .into_iter()
            .map(to_entry)
            .collect::<Result<Vec<_>, _>>()?;
        to_incident(m, timeline).map(Some)
    }

    async fn list(
        &self,
        company: CompanyId,
        after: Option<kernel::TimeCursor>,
        limit: u32,
    ) -> Result<Vec<Incident>, IncidentError> {
        let rows = crate::time_keyset(
            row::Entity::find().filter(row::Column::CompanyId.eq(company.as_uuid())),
            row::Column::CreatedAt,
            row::Column::Id,
            after,
            crate::TimeOrder::NewestFirst,
        )
        .limit(u64::from(limit))
        .all(&self.db)
        .await
        .map_err(internal)?;
        let mut lines = timelines(&self.db, company, rows.iter().map(|r| r.id).collect()).await?;
        rows.into_iter()
            .map(|m| {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut lines)
                    .into_iter()
                    .partition(|l| l.incident_id == m.id);
                lines = rest;
                let timeline = mine
                    .into_iter()
                    .map(to_entry)
                    .collect::<Result<Vec<_>, _>>()?;
                to_incident(m, timeline)
            })
            .collect()
    }

    async fn append(
        &self,
        company: CompanyId,
        id: Uuid,
        transition: Option<(Status, Status)>,
        entry: &TimelineEntry,
        audit: AuditRecord,
    ) -> Result<bool, IncidentError> {
        let txn = self.write_txn().await.map_err(internal)?;
        // This UPDATE is also the row lock that orders concurrent appends on PostgreSQL.
        let mut update = row::Entity::update_many()
            .col_expr(row::Column::UpdatedAt, Expr::value(entry.at))
            .filter(row::Column::Id.eq(id))
            .filter(row::Column::CompanyId.eq(company.as_uuid()));
        if let Some((from, to)) = transition {
            update = update
                .col_expr(row::Column::Status, Expr::value(to.as_str()))
                .filter(row::Column::Status.eq(from.as_str()));
        }
        if update.exec(&txn).await.map_err(internal)?.rows_affected != 1 {
            return Ok(false);
        }
        let last: Option<i64> = line::Entity::find()
            .select_only()
            .column_as(line::Column::Seq.max(), "max_seq")
            .filter(line::Column::IncidentId.eq(id))
            .into_tuple::<Option<i64>>()
            .one(&txn)
            .await
            .map_err(internal)?
            .flatten();
        line::Entity::insert(line_row(company, id, last.unwrap_or(0) + 1, entry))
            .exec_without_returning(&txn)
            .await
            .map_err(internal)?;
        self.commit_with_audit_as(txn, vec![audit], crate::Changed::NoSessionOrUser)
            .await
            .map_err(internal)?;
        Ok(true)
    }
}
