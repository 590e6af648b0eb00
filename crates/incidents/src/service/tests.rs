use std::sync::Mutex;

use chrono::TimeZone;
use kernel::{ManualClock, SequentialIds, SessionId, UserId};
use rbac::Role;

use super::*;

fn t0() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .unwrap()
}

fn actor(role: Role) -> Actor {
    Actor::new(
        UserId::from_uuid(Uuid::from_u128(1)),
        CompanyId::from_uuid(Uuid::from_u128(7)),
        SessionId::from_uuid(Uuid::from_u128(9)),
        role,
        role.default_permissions(),
    )
}

fn user(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(n))
}

#[derive(Default)]
struct FakeRepo {
    incidents: Mutex<Vec<Incident>>,
    audit: Mutex<Vec<AuditRecord>>,
}

#[async_trait]
impl IncidentRepository for FakeRepo {
    async fn insert(&self, incident: &Incident, audit: AuditRecord) -> Result<(), IncidentError> {
        self.incidents.lock().unwrap().push(incident.clone());
        self.audit.lock().unwrap().push(audit);
        Ok(())
    }
    async fn get(&self, company: CompanyId, id: Uuid) -> Result<Option<Incident>, IncidentError> {
        Ok(self
            .incidents
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.id == id && i.company_id == company)
            .cloned())
    }
    async fn list(
        &self,
        company: CompanyId,
        after: Option<kernel::TimeCursor>,
        limit: u32,
    ) -> Result<Vec<Incident>, IncidentError> {
        let mut all: Vec<Incident> = self
            .incidents
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.company_id == company)
            .cloned()
            .collect();
        all.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id)));
        Ok(all
            .into_iter()
            .filter(|i| after.is_none_or(|c| (i.created_at, i.id) < (c.at, c.id)))
            .take(limit as usize)
            .collect())
    }
    async fn append(
        &self,
        company: CompanyId,
        id: Uuid,
        transition: Option<(Status, Status)>,
        entry: &TimelineEntry,
        audit: AuditRecord,
    ) -> Result<bool, IncidentError> {
        let mut all = self.incidents.lock().unwrap();
        let Some(i) = all
            .iter_mut()
            .find(|i| i.id == id && i.company_id == company)
        else {
            return Ok(false);
        };
        if let Some((from, to)) = transition {
            if i.status != from {
                return Ok(false);
            }
            i.status = to;
        }
        i.timeline.push(entry.clone());
        self.audit.lock().unwrap().push(audit);
        Ok(true)
    }
}

fn service() -> (IncidentService, Arc<FakeRepo>) {
    let repo = Arc::new(FakeRepo::default());
    (
        IncidentService::new(
            repo.clone(),
            Arc::new(ManualClock::new(t0())),
            Arc::new(SequentialIds::default()),
        ),
        repo,
    )
}

fn new_incident() -> NewIncident {
    NewIncident {
        kind: "unauthorized_access".into(),
        severity: "high".into(),
        summary: "Inicios de sesión desde una IP desconocida".into(),
        affected_user_ids: vec![user(3), user(2), user(3)],
        alert_id: Some(Uuid::from_u128(77)),
    }
}

fn ctx() -> RequestContext {
    RequestContext::default()
}

#[tokio::test]
async fn an_incident_opens_with_its_facts_and_a_created_entry() {
    let (svc, repo) = service();
    let i = svc
        .open(&actor(Role::Admin), new_incident(), &ctx())
        .await
        .unwrap();
    assert_eq!(i.status, Status::Open);
    assert_eq!(
        i.affected_user_ids,
        [user(2), user(3)],
        "sorted, no duplicates"
    );
    assert_eq!(i.alert_id, Some(Uuid::from_u128(77)));
    assert_eq!(i.timeline.len(), 1);
    assert_eq!(i.timeline[0].kind, EntryKind::Created);
    let audit = repo.audit.lock().unwrap();
    assert_eq!(audit[0].action, Action::INCIDENT_CREATED);
    assert_eq!(audit[0].details["severity"], "high");
}

#[tokio::test]
async fn every_bad_field_is_reported_at_once() {
    let (svc, repo) = service();
    let bad = NewIncident {
        kind: "meteor".into(),
        severity: "extreme".into(),
        summary: "   ".into(),
        affected_user_ids: (0..=MAX_AFFECTED as u128).map(user).collect(),
        alert_id: None,
    };
    let Err(IncidentError::Validation(errors)) = svc.open(&actor(Role::Owner), bad, &ctx()).await
    else {
        panic!("expected validation errors");
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["kind", "severity", "summary", "affected_user_ids"]);
    assert!(repo.incidents.lock().unwrap().is_empty());
}

#[tokio::test]
async fn only_holders_of_incidents_manage_touch_incidents() {
    let (svc, _) = service();
    for role in [Role::Manager, Role::Vendor] {
        assert!(matches!(
            svc.open(&actor(role), new_incident(), &ctx()).await,
            Err(IncidentError::Forbidden)
        ));
        assert!(matches!(
            svc.list(&actor(role), None, 10).await,
            Err(IncidentError::Forbidden)
        ));
    }
}

#[tokio::test]
async fn the_workflow_only_moves_forward_one_step_at_a_time() {
    for from in Status::ALL {
        for to in Status::ALL {
            let (svc, repo) = service();
            let owner = actor(Role::Owner);
            let i = svc.open(&owner, new_incident(), &ctx()).await.unwrap();
            // Walk to `from` first.
            let mut at = Status::Open;
            while at != *from {
                let next = at.next().unwrap();
                svc.transition(&owner, i.id, next.as_str(), None, &ctx())
                    .await
                    .unwrap();
                at = next;
            }
            let result = svc
                .transition(&owner, i.id, to.as_str(), Some("nota"), &ctx())
                .await;
            let legal = matches!(
                (from, to),
                (Status::Open, Status::Contained)
                    | (Status::Contained, Status::Resolved)
                    | (Status::Resolved, Status::Closed)
            );
            match result {
                Ok(i) => {
                    assert!(legal, "{from} → {to} was allowed");
                    assert_eq!(i.status, *to);
                    assert_eq!(
                        i.timeline.last().unwrap().kind,
                        EntryKind::Transition {
                            from: *from,
                            to: *to
                        }
                    );
                    assert_eq!(i.timeline.last().unwrap().note.as_deref(), Some("nota"));
                }
                Err(IncidentError::InvalidTransition { .. }) => {
                    assert!(!legal, "{from} → {to} was refused");
                    assert_eq!(
                        repo.get(owner.company_id, i.id)
                            .await
                            .unwrap()
                            .unwrap()
                            .status,
                        *from
                    );
                }
                Err(e) => panic!("{from} → {to}: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn notifying_lists_recipients_and_message_in_the_audit_record() {
    let (svc, repo) = service();
    let owner = actor(Role::Owner);
    let i = svc.open(&owner, new_incident(), &ctx()).await.unwrap();
    assert_eq!(
        svc.notify(&owner, i.id, Some("Cambia tu contraseña."), &ctx())
            .await
            .unwrap(),
        2
    );
    assert_eq!(svc.notify(&owner, i.id, None, &ctx()).await.unwrap(), 2);
    let notified: Vec<AuditRecord> = repo
        .audit
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.action == Action::INCIDENT_NOTIFIED)
        .cloned()
        .collect();
    assert_eq!(notified[0].details["message"], "Cambia tu contraseña.");
    assert_eq!(
        notified[1].details["message"], i.summary,
        "the summary by default"
    );
    let notices = notify::notices_for_record(&notified[0]);
    assert_eq!(
        notices.iter().map(|n| n.user_id).collect::<Vec<_>>(),
        [user(2), user(3)]
    );
    let none = svc
        .open(
            &owner,
            NewIncident {
                affected_user_ids: vec![],
                ..new_incident()
            },
            &ctx(),
        )
        .await
        .unwrap();
    assert!(matches!(
        svc.notify(&owner, none.id, None, &ctx()).await,
        Err(IncidentError::Validation(_))
    ));
    assert!(matches!(
        svc.notify(&owner, Uuid::from_u128(12345), None, &ctx())
            .await,
        Err(IncidentError::NotFound)
    ));
}

#[tokio::test]
async fn notes_go_on_the_timeline_in_any_status() {
    let (svc, _) = service();
    let owner = actor(Role::Owner);
    let i = svc.open(&owner, new_incident(), &ctx()).await.unwrap();
    let i2 = svc
        .add_note(&owner, i.id, "Revocamos las sesiones.", &ctx())
        .await
        .unwrap();
    assert_eq!(i2.timeline.last().unwrap().kind, EntryKind::Note);
    assert!(matches!(
        svc.add_note(&owner, i.id, "", &ctx()).await,
        Err(IncidentError::Validation(_))
    ));
}

/// The list pages newest first (here all opened at one instant: ties go by id), asking the
/// store for one more than it returns, and names a cursor only when more follow.
#[tokio::test]
async fn incidents_list_in_pages_that_neither_skip_nor_repeat() {
    let (svc, _) = service();
    let owner = actor(Role::Owner);
    let mut opened = Vec::new();
    for _ in 0..5 {
        opened.push(svc.open(&owner, new_incident(), &ctx()).await.unwrap().id);
    }
    opened.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = svc.list(&owner, after, 2).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|i| i.id));
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!((seen, pages), (opened.clone(), 3));
    // A limit past the largest page is clamped; zero means one.
    let all = svc.list(&owner, None, 10_000).await.unwrap();
    assert_eq!((all.items.len(), all.next_cursor), (5, None));
    let one = svc.list(&owner, None, 0).await.unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.next_cursor, Some(one.items[0].cursor()));
}
