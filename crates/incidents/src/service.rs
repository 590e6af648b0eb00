//! Incident use cases and their storage port.

use std::sync::Arc;

use async_trait::async_trait;
use audit::{Action, AuditRecord, Outcome};
use kernel::{Clock, CompanyId, IdGenerator, RequestContext, Timestamp};
use rbac::{Actor, Permission, Scope, authorize};
use uuid::Uuid;

use crate::{
    EntryKind, Incident, IncidentKind, IncidentPage, MAX_AFFECTED, MAX_NOTE_CHARS,
    MAX_SUMMARY_CHARS, NewIncident, Severity, Status, TimelineEntry,
};

/// One invalid field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Invalid {
    /// The field as the API names it.
    pub field: &'static str,
    /// A stable reason.
    pub code: &'static str,
}

/// Errors of the incidents crate.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Fields break rules; every problem at once.
    #[error("invalid fields")]
    Validation(Vec<Invalid>),
    /// No such incident in the actor's company.
    #[error("not found")]
    NotFound,
    /// The workflow does not allow this move.
    #[error("cannot move from {from} to {to}")]
    InvalidTransition {
        /// Current status.
        from: Status,
        /// Asked for.
        to: Status,
    },
    /// The actor lacks `incidents.manage`.
    #[error("forbidden")]
    Forbidden,
    /// Infrastructure failure; details stay in the source.
    #[error("internal error in incidents")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl IncidentError {
    /// Wraps an infrastructure error.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

/// Storage of incidents. Writes carry their audit record and commit with it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IncidentRepository: Send + Sync {
    /// Stores a new incident after checking, in the same transaction, that every affected user
    /// and the alert belong to its company (`Validation` otherwise, nothing stored).
    async fn insert(&self, incident: &Incident, audit: AuditRecord) -> Result<(), IncidentError>;

    /// One incident with its timeline.
    async fn get(&self, company: CompanyId, id: Uuid) -> Result<Option<Incident>, IncidentError>;

    /// The company's incidents, newest first (ties: highest id first), with their timelines:
    /// only those after `after` in that order, at most `limit`.
    async fn list(
        &self,
        company: CompanyId,
        after: Option<kernel::TimeCursor>,
        limit: u32,
    ) -> Result<Vec<Incident>, IncidentError>;

    /// Appends `entry` to the incident's timeline and records `audit`. With `transition =
    /// Some((from, to))` it also moves the status to `to` if, and only if, it is still `from`
    /// (compare-and-set: of two concurrent transitions one wins). `false` when the incident does
    /// not exist in `company` or its status moved meanwhile; nothing is written then.
    async fn append(
        &self,
        company: CompanyId,
        id: Uuid,
        transition: Option<(Status, Status)>,
        entry: &TimelineEntry,
        audit: AuditRecord,
    ) -> Result<bool, IncidentError>;
}

/// The incident use cases. Cheap to clone.
#[derive(Clone)]
pub struct IncidentService {
    repo: Arc<dyn IncidentRepository>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for IncidentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncidentService").finish_non_exhaustive()
    }
}

fn clean_text(text: &str, max: usize) -> Option<String> {
    kernel::clean_text(text, max).ok().map(str::to_owned)
}

impl IncidentService {
    /// Wires the use cases.
    #[must_use]
    pub fn new(
        repo: Arc<dyn IncidentRepository>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self { repo, clock, ids }
    }

    fn check(actor: &Actor) -> Result<(), IncidentError> {
        if authorize(actor, Permission::IncidentsManage, Scope::Company).is_allowed() {
            Ok(())
        } else {
            Err(IncidentError::Forbidden)
        }
    }

    fn record(&self, action: Action, actor: &Actor, id: Uuid, ctx: &RequestContext) -> AuditRecord {
        AuditRecord::new(
            self.ids.new_id(),
            self.clock.now(),
            action,
            Outcome::Success,
            ctx,
        )
        .by(actor)
        .target("incident", id)
    }

    fn entry(
        &self,
        actor: &Actor,
        at: Timestamp,
        kind: EntryKind,
        note: Option<String>,
    ) -> TimelineEntry {
        TimelineEntry {
            id: self.ids.new_id(),
            at,
            actor_id: actor.user_id,
            kind,
            note,
        }
    }

    /// Opens an incident (INC-1), optionally from an audit alert.
    ///
    /// # Errors
    /// `Forbidden`, `Validation` (every bad field at once, also affected users or an alert of
    /// another company), `Internal`.
    pub async fn open(
        &self,
        actor: &Actor,
        new: NewIncident,
        ctx: &RequestContext,
    ) -> Result<Incident, IncidentError> {
        Self::check(actor)?;
        let mut errors = Vec::new();
        let kind = IncidentKind::parse(&new.kind);
        if kind.is_none() {
            errors.push(Invalid {
                field: "kind",
                code: "unknown",
            });
        }
        let severity = Severity::parse(&new.severity);
        if severity.is_none() {
            errors.push(Invalid {
                field: "severity",
                code: "unknown",
            });
        }
        let summary = clean_text(&new.summary, MAX_SUMMARY_CHARS);
        if summary.is_none() {
            errors.push(Invalid {
                field: "summary",
                code: "empty_or_too_long",
            });
        }
        let mut affected = new.affected_user_ids;
        affected.sort_unstable_by_key(|u| u.as_uuid());
        affected.dedup();
        if affected.len() > MAX_AFFECTED {
            errors.push(Invalid {
                field: "affected_user_ids",
                code: "too_many",
            });
        }
        let (Some(kind), Some(severity), Some(summary), true) =
            (kind, severity, summary, errors.is_empty())
        else {
            return Err(IncidentError::Validation(errors));
        };
        let now = self.clock.now();
        let id = self.ids.new_id();
        let incident = Incident {
            id,
            company_id: actor.company_id,
            kind,
            severity,
            summary,
            status: Status::Open,
            affected_user_ids: affected,
            alert_id: new.alert_id,
            created_by: actor.user_id,
            created_at: now,
            updated_at: now,
            timeline: vec![self.entry(actor, now, EntryKind::Created, None)],
        };
        let audit = self
            .record(Action::INCIDENT_CREATED, actor, id, ctx)
            .details(serde_json::json!({
                "kind": kind.as_str(),
                "severity": severity.as_str(),
                "alert_id": incident.alert_id,
                "affected_users": incident.affected_user_ids.len(),
            }));
        self.repo.insert(&incident, audit).await?;
        Ok(incident)
    }

    /// A page of the company's incidents, newest first, from `after` (the previous page's
    /// `next_cursor`); `limit` is clamped to 1..=[`Self::MAX_PAGE`].
    ///
    /// # Errors
    /// `Forbidden`, `Internal`.
    pub async fn list(
        &self,
        actor: &Actor,
        after: Option<kernel::TimeCursor>,
        limit: u32,
    ) -> Result<IncidentPage, IncidentError> {
        Self::check(actor)?;
        let limit = limit.clamp(1, Self::MAX_PAGE);
        // One more than asked, to know whether another page follows.
        let mut items = self
            .repo
            .list(actor.company_id, after, limit.saturating_add(1))
            .await?;
        let next_cursor = kernel::cut_page(&mut items, u64::from(limit), Incident::cursor);
        Ok(IncidentPage { items, next_cursor })
    }

    /// The largest page of [`Self::list`].
    pub const MAX_PAGE: u32 = 200;

    /// One incident; another company's is `NotFound`.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Internal`.
    pub async fn get(&self, actor: &Actor, id: Uuid) -> Result<Incident, IncidentError> {
        Self::check(actor)?;
        self.repo
            .get(actor.company_id, id)
            .await?
            .ok_or(IncidentError::NotFound)
    }

    /// Moves the incident to `to`, which must be its status's next one; `note` goes on the
    /// timeline.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation` (unknown status, bad note), `InvalidTransition`
    /// (also when another request moved it first), `Internal`.
    pub async fn transition(
        &self,
        actor: &Actor,
        id: Uuid,
        to: &str,
        note: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Incident, IncidentError> {
        Self::check(actor)?;
        let mut errors = Vec::new();
        let target = Status::parse(to);
        if target.is_none() {
            errors.push(Invalid {
                field: "to",
                code: "unknown",
            });
        }
        let note = match note {
            Some(n) => match clean_text(n, MAX_NOTE_CHARS) {
                Some(n) => Some(n),
                None => {
                    errors.push(Invalid {
                        field: "note",
                        code: "empty_or_too_long",
                    });
                    None
                }
            },
            None => None,
        };
        let (Some(to), true) = (target, errors.is_empty()) else {
            return Err(IncidentError::Validation(errors));
        };
        let current = self.get(actor, id).await?;
        if current.status.next() != Some(to) {
            return Err(IncidentError::InvalidTransition {
                from: current.status,
                to,
            });
        }
        let now = self.clock.now();
        let entry = self.entry(
            actor,
            now,
            EntryKind::Transition {
                from: current.status,
                to,
            },
            note,
        );
        let audit = self
            .record(Action::INCIDENT_TRANSITIONED, actor, id, ctx)
            .details(serde_json::json!({ "from": current.status.as_str(), "to": to.as_str() }));
        if !self
            .repo
            .append(
                actor.company_id,
                id,
                Some((current.status, to)),
                &entry,
                audit,
            )
            .await?
        {
            let now_status = self.get(actor, id).await?.status;
            return Err(IncidentError::InvalidTransition {
                from: now_status,
                to,
            });
        }
        self.get(actor, id).await
    }

    /// Adds a note to the timeline.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation`, `Internal`.
    pub async fn add_note(
        &self,
        actor: &Actor,
        id: Uuid,
        note: &str,
        ctx: &RequestContext,
    ) -> Result<Incident, IncidentError> {
        Self::check(actor)?;
        let Some(note) = clean_text(note, MAX_NOTE_CHARS) else {
            return Err(IncidentError::Validation(vec![Invalid {
                field: "note",
                code: "empty_or_too_long",
            }]));
        };
        let entry = self.entry(actor, self.clock.now(), EntryKind::Note, Some(note));
        let audit = self.record(Action::INCIDENT_NOTE_ADDED, actor, id, ctx);
        if !self
            .repo
            .append(actor.company_id, id, None, &entry, audit)
            .await?
        {
            return Err(IncidentError::NotFound);
        }
        self.get(actor, id).await
    }

    /// Queues a message to every affected user (INC-2): the `incident.notified` audit record
    /// lists the recipients and the text, and the outbox messages derive from it in the same
    /// transaction. Without `message`, the incident's summary is sent. Returns the number queued.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation` (bad message, or nobody to notify), `Internal`.
    pub async fn notify(
        &self,
        actor: &Actor,
        id: Uuid,
        message: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<usize, IncidentError> {
        Self::check(actor)?;
        let message = match message {
            Some(m) => clean_text(m, notify::MAX_MESSAGE_CHARS).ok_or_else(|| {
                IncidentError::Validation(vec![Invalid {
                    field: "message",
                    code: "empty_or_too_long",
                }])
            })?,
            None => String::new(),
        };
        let current = self.get(actor, id).await?;
        if current.affected_user_ids.is_empty() {
            return Err(IncidentError::Validation(vec![Invalid {
                field: "affected_user_ids",
                code: "empty",
            }]));
        }
        let message = if message.is_empty() {
            current.summary.clone()
        } else {
            message
        };
        let recipients = current.affected_user_ids.len();
        let entry = self.entry(
            actor,
            self.clock.now(),
            EntryKind::Notified {
                recipients: u32::try_from(recipients).unwrap_or(u32::MAX),
            },
            Some(message.clone()),
        );
        let audit = self
            .record(Action::INCIDENT_NOTIFIED, actor, id, ctx)
            .details(serde_json::json!({
                "recipients": current.affected_user_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "message": message,
            }));
        if !self
            .repo
            .append(actor.company_id, id, None, &entry, audit)
            .await?
        {
            return Err(IncidentError::NotFound);
        }
        Ok(recipients)
    }
}

#[cfg(test)]
mod tests;
