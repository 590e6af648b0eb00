//! Security incidents of IncrementaCRM (INC-1, INC-2): a record per incident with kind, severity,
//! summary, affected users and an optional link to the audit alert that revealed it; a timeline
//! of every step; the workflow open → contained → resolved → closed, where any other move is
//! refused; and notification of the affected users through the outbox (the notice derives from
//! the `incident.notified` audit record, written in the same transaction). Every change is
//! audited. This crate must never depend on a database, a web framework or a mail library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod model;
mod service;

pub use model::{
    EntryKind, Incident, IncidentKind, IncidentPage, MAX_AFFECTED, MAX_NOTE_CHARS,
    MAX_SUMMARY_CHARS, NewIncident, Severity, Status, TimelineEntry,
};
#[cfg(any(test, feature = "mocks"))]
pub use service::MockIncidentRepository;
pub use service::{IncidentError, IncidentRepository, IncidentService, Invalid};
