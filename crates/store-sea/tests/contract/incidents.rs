//! Incidents and the notification outbox on both databases.

use ::audit::AuditSink;
use ::incidents::{
    EntryKind, Incident, IncidentError, IncidentKind, IncidentRepository, Severity, Status,
    TimelineEntry,
};
use ::notify::OutboxStore;

use super::*;

fn incident(c: &Company, u: &User, affected: Vec<UserId>) -> Incident {
    Incident {
        id: id(),
        company_id: c.id,
        kind: IncidentKind::DataLeak,
        severity: Severity::Critical,
        summary: "Fuga".into(),
        status: Status::Open,
        affected_user_ids: affected,
        alert_id: None,
        created_by: u.id,
        created_at: t0(),
        updated_at: t0(),
        timeline: vec![TimelineEntry {
            id: id(),
            at: t0(),
            actor_id: u.id,
            kind: EntryKind::Created,
            note: None,
        }],
    }
}

/// A company's incidents page newest first from a cursor: incidents opened at one instant are
/// neither skipped nor repeated (ties go by id), sub-second times survive the round trip,
/// another company's never appear, and each page carries its incidents' timelines.
#[tokio::test]
async fn incidents_page_by_cursor_without_gaps_or_repeats() {
    for (db, store, _conn) in stores().await {
        let b = db.backend;
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let (other, ou) = company_with_owner(&store, Role::Owner).await;
        let mut mine = Vec::new();
        for s in [0_i64, 1, 1, 1, 2, 3] {
            let mut i = incident(&c, &u, vec![u.id]);
            i.created_at = t0() + chrono::Duration::microseconds(s * 1_500_001);
            store
                .insert(&i, record(Action::INCIDENT_CREATED, Some(c.id)))
                .await
                .unwrap();
            mine.push(i);
        }
        let theirs = incident(&other, &ou, vec![ou.id]);
        store
            .insert(&theirs, record(Action::INCIDENT_CREATED, Some(other.id)))
            .await
            .unwrap();
        mine.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id)));
        let mut seen = Vec::new();
        let mut after = None;
        for page in 0.. {
            assert!(page < 10, "{b}: paging does not end");
            let got = store.list(c.id, after, 4).await.unwrap();
            let Some(last) = got.last() else { break };
            after = Some(last.cursor());
            for i in &got {
                assert_eq!(i.timeline.len(), 1, "{b}");
            }
            seen.extend(got.iter().map(|i| (i.id, i.created_at)));
        }
        let expected: Vec<_> = mine.iter().map(|i| (i.id, i.created_at)).collect();
        assert_eq!(seen, expected, "{b}");
        let rest = store.list(c.id, Some(mine[0].cursor()), 10).await.unwrap();
        assert_eq!(rest.len(), 5, "{b}");
        assert!(
            store
                .list(c.id, Some(mine[5].cursor()), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_transitions_one_wins_and_the_timeline_stays_ordered() {
    for (db, store, _conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let i = incident(&c, &u, vec![u.id]);
        store
            .insert(&i, record(Action::INCIDENT_CREATED, Some(c.id)))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for n in 0..6 {
            let store = store.clone();
            let (cid, iid, uid) = (c.id, i.id, u.id);
            tasks.push(tokio::spawn(async move {
                let entry = TimelineEntry {
                    id: id(),
                    at: t0(),
                    actor_id: uid,
                    kind: if n % 2 == 0 {
                        EntryKind::Transition {
                            from: Status::Open,
                            to: Status::Contained,
                        }
                    } else {
                        EntryKind::Note
                    },
                    note: Some(format!("n{n}")),
                };
                let transition = (n % 2 == 0).then_some((Status::Open, Status::Contained));
                store
                    .append(
                        cid,
                        iid,
                        transition,
                        &entry,
                        record(Action::INCIDENT_TRANSITIONED, Some(cid)),
                    )
                    .await
                    .unwrap()
                    .then_some(transition.is_some())
            }));
        }
        let mut transitions = 0;
        let mut notes = 0;
        for t in tasks {
            match t.await.unwrap() {
                Some(true) => transitions += 1,
                Some(false) => notes += 1,
                None => {}
            }
        }
        assert_eq!((transitions, notes), (1, 3), "{}", db.backend);
        let back = store.get(c.id, i.id).await.unwrap().unwrap();
        assert_eq!(back.status, Status::Contained);
        assert_eq!(back.timeline.len(), 5, "created + 1 transition + 3 notes");
        assert_eq!(back.timeline[0].kind, EntryKind::Created);
        // Another company sees nothing and cannot append.
        let other = CompanyId::from_uuid(id());
        assert!(store.get(other, i.id).await.unwrap().is_none());
        let entry = back.timeline[1].clone();
        assert!(
            !store
                .append(
                    other,
                    i.id,
                    None,
                    &TimelineEntry { id: id(), ..entry },
                    record(Action::INCIDENT_NOTE_ADDED, Some(other))
                )
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn affected_users_must_belong_to_the_company() {
    for (db, store, conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let (_, stranger) = company_with_owner(&store, Role::Owner).await;
        let i = incident(&c, &u, vec![u.id, stranger.id]);
        let err = store
            .insert(&i, record(Action::INCIDENT_CREATED, Some(c.id)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, IncidentError::Validation(_)),
            "{}: {err}",
            db.backend
        );
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM incidents").await, 0);
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'incident.created'"
            )
            .await,
            0
        );
    }
}

#[tokio::test]
async fn notices_are_queued_with_their_record_and_delivered_with_leases_and_attempts() {
    for (db, store, conn) in stores().await {
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let (_, stranger) = company_with_owner(&store, Role::Owner).await;
        // A notice for a user of another company is never queued.
        store
            .record(record(Action::MFA_ENABLED, Some(c.id)).target("user", stranger.id))
            .await
            .unwrap();
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM outbox_messages").await,
            0,
            "{}",
            db.backend
        );
        store
            .record(record(Action::MFA_ENABLED, Some(c.id)).target("user", u.id))
            .await
            .unwrap();
        assert_eq!(store.backlog().await.unwrap(), 1);
        let lease = t0() + chrono::Duration::minutes(2);
        let claimed = store.claim_due(t0(), lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].to, u.email.as_str());
        assert_eq!(claimed[0].template, "mfa_enabled");
        assert!(claimed[0].body.starts_with("Hola, Ana:"));
        // Leased: not claimable again until the lease ends.
        assert!(store.claim_due(t0(), lease, 10).await.unwrap().is_empty());
        let later = lease + chrono::Duration::seconds(1);
        let again = store
            .claim_due(later, later + chrono::Duration::minutes(2), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "a crashed worker's claim comes back");
        store
            .record_attempt(
                again[0].id,
                later,
                Some("421 try later".into()),
                Some(later + chrono::Duration::seconds(30)),
            )
            .await
            .unwrap();
        let retry = store
            .claim_due(
                later + chrono::Duration::seconds(30),
                later + chrono::Duration::minutes(3),
                10,
            )
            .await
            .unwrap();
        assert_eq!(retry[0].attempts, 1);
        store
            .record_attempt(retry[0].id, later, None, None)
            .await
            .unwrap();
        assert_eq!(store.backlog().await.unwrap(), 0);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM outbox_attempts").await,
            2
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM outbox_messages WHERE delivered_at IS NOT NULL AND attempts = 2").await,
            1
        );
    }
}

#[tokio::test]
async fn finished_messages_queued_before_the_cut_off_are_purged_with_their_attempts() {
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        for _ in 0..4 {
            store
                .record(record(Action::MFA_ENABLED, Some(c.id)).target("user", u.id))
                .await
                .unwrap();
        }
        let at = t0() + chrono::Duration::minutes(1);
        let claimed = store
            .claim_due(t0(), t0() + chrono::Duration::minutes(2), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 4, "{b}");
        // Delivered; given up; failed, to be retried; the fourth stays leased, being sent.
        store
            .record_attempt(claimed[0].id, at, None, None)
            .await
            .unwrap();
        store
            .record_attempt(claimed[1].id, at, Some("550 no such user".into()), None)
            .await
            .unwrap();
        store
            .record_attempt(
                claimed[2].id,
                at,
                Some("421 try later".into()),
                Some(at + chrono::Duration::hours(1)),
            )
            .await
            .unwrap();
        // Past one batch of delivered messages, each with its attempt.
        let id = |m: &notify::OutboxMessage| match b {
            "postgres" => format!("'{}'", m.id),
            _ => format!("X'{}'", m.id.simple()),
        };
        let columns = "company_id, user_id, to_address, to_name, template, subject, body, cause, \
                       created_at, attempts, next_attempt_at, delivered_at, gave_up_at, last_error";
        let (new_id, series) = match b {
            "postgres" => (
                "gen_random_uuid()",
                "generate_series(1, 1049) AS g".to_owned(),
            ),
            _ => (
                "randomblob(16)",
                "(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1049) \
                 SELECT n FROM g) AS g"
                    .to_owned(),
            ),
        };
        conn.execute_unprepared(&format!(
            "INSERT INTO outbox_messages (id, {columns}) SELECT {new_id}, {columns} \
             FROM outbox_messages, {series} WHERE id = {}",
            id(&claimed[0])
        ))
        .await
        .unwrap();
        conn.execute_unprepared(&format!(
            "INSERT INTO outbox_attempts (id, message_id, at, outcome, error) \
             SELECT {new_id}, m.id, m.delivered_at, 'delivered', NULL FROM outbox_messages m \
             WHERE m.delivered_at IS NOT NULL AND m.id <> {}",
            id(&claimed[0])
        ))
        .await
        .unwrap();
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM outbox_messages").await,
            1_053,
            "{b}"
        );

        // Queued at t0: a cut-off at t0 is not after them.
        assert_eq!(store.purge_finished(t0()).await.unwrap(), 0, "{b}");
        let cut = t0() + chrono::Duration::days(1);
        assert_eq!(store.purge_finished(cut).await.unwrap(), 1_051, "{b}");
        let left = |sql: &'static str| count(&conn, sql);
        assert_eq!(left("SELECT COUNT(*) FROM outbox_messages").await, 2, "{b}");
        for m in &claimed[2..] {
            let sql = format!("SELECT COUNT(*) FROM outbox_messages WHERE id = {}", id(m));
            assert_eq!(
                count(&conn, &sql).await,
                1,
                "{b}: a pending message was purged"
            );
        }
        // Only the retried message's attempt is left; nothing points at a deleted message.
        assert_eq!(left("SELECT COUNT(*) FROM outbox_attempts").await, 1, "{b}");
        assert_eq!(
            left(
                "SELECT COUNT(*) FROM outbox_attempts a WHERE NOT EXISTS \
                 (SELECT 1 FROM outbox_messages m WHERE m.id = a.message_id)"
            )
            .await,
            0,
            "{b}"
        );
        assert_eq!(store.backlog().await.unwrap(), 2, "{b}");
        assert_eq!(store.purge_finished(cut).await.unwrap(), 0, "{b}");
    }
}

/// AUD-7 triage on both databases: an alert leaves `open` once, by dismissal (a compare-and-set
/// stored with its audit record, nothing stored when it loses) or by an incident opened from it
/// (in the incident's transaction, also for an alert dismissed earlier); another company sees
/// none of it; and a handled alert still holds back a repeat of itself within its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_leave_open_once_by_dismissal_or_by_an_incident() {
    use ::audit::{Alert, AuditLog};
    for (db, store, conn) in stores().await {
        let b = db.backend;
        let (c, u) = company_with_owner(&store, Role::Owner).await;
        let (other, _) = company_with_owner(&store, Role::Owner).await;
        let chain = ::audit::chain_name(Some(c.id));
        let alert = |subject: &str| Alert {
            id: id(),
            company_id: Some(c.id),
            at: t0(),
            rule: "ip_login_failures".into(),
            severity: "high".into(),
            summary: format!("20 failed logins from {subject} within 15 minutes"),
            subject: subject.into(),
            status: Alert::OPEN.into(),
            record_id: id(),
        };
        let [a1, a2, a3] = [
            alert("198.51.100.1"),
            alert("198.51.100.2"),
            alert("198.51.100.3"),
        ];
        assert!(
            store
                .save_review(&chain, 0, 1, vec![a1.clone(), a2.clone(), a3.clone()])
                .await
                .unwrap()
        );
        // The gauge counts open company alerts; a platform-wide one no company can triage is
        // left out.
        let platform = Alert {
            company_id: None,
            ..alert("203.0.113.66")
        };
        assert!(
            store
                .save_review(&::audit::chain_name(None), 0, 1, vec![platform.clone()])
                .await
                .unwrap()
        );
        assert_eq!(store.open_alerts(false).await.unwrap(), 3, "{b}");
        assert_eq!(store.open_alerts(true).await.unwrap(), 1, "{b}");
        // The platform's alerts are reached with no company (the operator's command), and with
        // no company's id.
        assert_eq!(
            store.alert(Some(c.id), platform.id).await.unwrap(),
            None,
            "{b}"
        );
        assert!(
            store
                .set_alert_status(
                    None,
                    platform.id,
                    Alert::OPEN,
                    Alert::DISMISSED,
                    record(Action::ALERT_DISMISSED, None),
                )
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(
            store.alerts(None, None, None, 10).await.unwrap()[0].status,
            "dismissed",
            "{b}"
        );
        assert_eq!(store.open_alerts(true).await.unwrap(), 0, "{b}");
        let counted = format!(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'audit.alert_dismissed' \
             AND chain = '{chain}'"
        );
        let dismissals = || count(&conn, &counted);
        let status = |company: CompanyId, alert: uuid::Uuid| {
            let store = store.clone();
            async move {
                store
                    .alert(Some(company), alert)
                    .await
                    .unwrap()
                    .map(|a| a.status)
            }
        };
        let dismiss = |company: CompanyId, alert: uuid::Uuid| {
            let store = store.clone();
            async move {
                store
                    .set_alert_status(
                        Some(company),
                        alert,
                        Alert::OPEN,
                        Alert::DISMISSED,
                        record(Action::ALERT_DISMISSED, Some(company)),
                    )
                    .await
                    .unwrap()
            }
        };

        // Another company's request neither sees nor moves it, and stores nothing.
        assert_eq!(status(other.id, a1.id).await, None, "{b}");
        assert!(!dismiss(other.id, a1.id).await, "{b}");
        assert_eq!(dismissals().await, 0, "{b}");
        assert!(dismiss(c.id, a1.id).await, "{b}");
        assert_eq!(
            status(c.id, a1.id).await.as_deref(),
            Some("dismissed"),
            "{b}"
        );
        assert!(!dismiss(c.id, a1.id).await, "{b}: twice");
        assert_eq!(dismissals().await, 1, "{b}");

        // Six at once: one wins, one record.
        let tasks: Vec<_> = (0..6).map(|_| tokio::spawn(dismiss(c.id, a2.id))).collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1, "{b}");
        assert_eq!(dismissals().await, 2, "{b}");

        // Incidents opened from an open alert and from a dismissed one take both up.
        for alert in [&a3, &a1] {
            let mut i = incident(&c, &u, vec![]);
            i.alert_id = Some(alert.id);
            store
                .insert(&i, record(Action::INCIDENT_CREATED, Some(c.id)))
                .await
                .unwrap();
            assert_eq!(
                status(c.id, alert.id).await.as_deref(),
                Some("incident"),
                "{b}"
            );
        }
        assert!(
            !dismiss(c.id, a3.id).await,
            "{b}: an incident's alert stays"
        );
        let open = store
            .alerts(Some(c.id), Some(Alert::OPEN.into()), None, 10)
            .await
            .unwrap();
        assert!(open.is_empty(), "{b}: {open:?}");
        assert_eq!(store.open_alerts(false).await.unwrap(), 0, "{b}");
        // The actor of the record that raised an alert, read within the company only.
        let raised = record(Action::SESSION_LOGIN, Some(c.id)).actor(u.id);
        let raised_id = raised.id;
        store.record(raised).await.unwrap();
        assert_eq!(
            store.record_actor(Some(c.id), raised_id).await.unwrap(),
            Some(u.id),
            "{b}"
        );
        assert_eq!(
            store.record_actor(Some(other.id), raised_id).await.unwrap(),
            None,
            "{b}"
        );
        assert_eq!(
            store.record_actor(Some(c.id), id()).await.unwrap(),
            None,
            "{b}"
        );
        // A handled alert still holds back a repeat of itself within its window.
        assert!(
            store
                .alert_since(&chain, "ip_login_failures", "198.51.100.1", t0())
                .await
                .unwrap(),
            "{b}"
        );
    }
}
