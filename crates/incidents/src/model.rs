use kernel::{CompanyId, Timestamp, UserId};
use uuid::Uuid;

/// Longest summary.
pub const MAX_SUMMARY_CHARS: usize = 500;
/// Longest note.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// Most affected users on one incident.
pub const MAX_AFFECTED: usize = 1_000;

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The stable name.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// Parses a stable name.
            #[must_use]
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// What happened (INC-1).
    IncidentKind {
        /// Someone got in who should not have.
        UnauthorizedAccess = "unauthorized_access",
        /// Data left the company's control.
        DataLeak = "data_leak",
        /// Data or configuration was changed without authorization.
        UnauthorizedChange = "unauthorized_change",
        /// Anything else.
        Other = "other",
    }
);

named_enum!(
    /// How bad it is.
    Severity {
        /// Low.
        Low = "low",
        /// Medium.
        Medium = "medium",
        /// High.
        High = "high",
        /// Critical.
        Critical = "critical",
    }
);

named_enum!(
    /// Where the incident is in its workflow.
    Status {
        /// Reported; being triaged.
        Open = "open",
        /// The damage is stopped (sessions revoked, users deactivated, keys rotated).
        Contained = "contained",
        /// The cause is removed and service restored.
        Resolved = "resolved",
        /// Reviewed and done.
        Closed = "closed",
    }
);

impl Status {
    /// The one status this one may move to (INC-1: open → contained → resolved → closed).
    ///
    /// ```
    /// use incidents::Status;
    ///
    /// assert_eq!(Status::parse("open").and_then(Status::next), Some(Status::Contained));
    /// assert_eq!(Status::Closed.next(), None, "closed is final");
    /// assert_eq!(Status::parse("reopened"), None);
    /// ```
    #[must_use]
    pub const fn next(self) -> Option<Self> {
        match self {
            Self::Open => Some(Self::Contained),
            Self::Contained => Some(Self::Resolved),
            Self::Resolved => Some(Self::Closed),
            Self::Closed => None,
        }
    }
}

/// What a timeline entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// The incident was opened.
    Created,
    /// It moved from one status to the next.
    Transition {
        /// Before.
        from: Status,
        /// After.
        to: Status,
    },
    /// A note.
    Note,
    /// Affected users were notified.
    Notified {
        /// How many.
        recipients: u32,
    },
}

impl EntryKind {
    /// The stable name.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Transition { .. } => "transition",
            Self::Note => "note",
            Self::Notified { .. } => "notified",
        }
    }
}

/// One step of an incident's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Id.
    pub id: Uuid,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor_id: UserId,
    /// What.
    pub kind: EntryKind,
    /// Free text.
    pub note: Option<String>,
}

/// An incident with its timeline, oldest entry first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Id.
    pub id: Uuid,
    /// Tenant.
    pub company_id: CompanyId,
    /// Kind.
    pub kind: IncidentKind,
    /// Severity.
    pub severity: Severity,
    /// One paragraph.
    pub summary: String,
    /// Workflow position.
    pub status: Status,
    /// Users of the company it affects.
    pub affected_user_ids: Vec<UserId>,
    /// The audit alert it was opened from.
    pub alert_id: Option<Uuid>,
    /// Who opened it.
    pub created_by: UserId,
    /// Opened.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// History.
    pub timeline: Vec<TimelineEntry>,
}

impl Incident {
    /// Where the page after this incident starts, in the listing's order.
    #[must_use]
    pub fn cursor(&self) -> kernel::TimeCursor {
        kernel::TimeCursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

/// A page of incidents, newest first.
#[derive(Debug, Clone)]
pub struct IncidentPage {
    /// The incidents, with their timelines.
    pub items: Vec<Incident>,
    /// Where the next page starts; `None` after the last.
    pub next_cursor: Option<kernel::TimeCursor>,
}

/// An incident as a client reports it, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    /// Kind name.
    pub kind: String,
    /// Severity name.
    pub severity: String,
    /// Summary.
    pub summary: String,
    /// Affected users.
    pub affected_user_ids: Vec<UserId>,
    /// Alert to link.
    pub alert_id: Option<Uuid>,
}
