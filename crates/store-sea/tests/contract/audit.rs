use std::sync::Arc;

use ::audit::{AuditLog, AuditService, AuditSink, chain_name};
use kernel::{CompanyId, ManualClock, SequentialIds};

use super::*;

pub(crate) fn service(store: &Arc<SeaStore>, clock: Arc<ManualClock>) -> AuditService {
    AuditService::new(
        store.clone(),
        store.clone(),
        chain(),
        clock,
        Arc::new(SequentialIds::default()),
    )
}

fn at(company: CompanyId, seconds: i64) -> AuditRecord {
    let mut r = record(Action::SESSION_LOGIN, Some(company));
    r.at = t0() + chrono::Duration::seconds(seconds);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_unbroken_chain() {
    for (db, store, _) in stores().await {
        let company = CompanyId::from_uuid(id());
        let mut tasks = Vec::new();
        for n in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(
                async move { store.record(at(company, n)).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        let report = svc.verify_chain(&chain_name(Some(company))).await.unwrap();
        assert!(report.ok, "{}: {report:?}", db.backend);
        assert_eq!(report.checked, 40);
        assert_eq!(
            store
                .head(&chain_name(Some(company)))
                .await
                .unwrap()
                .unwrap()
                .0,
            40
        );
    }
}

/// Group commit: many concurrent standalone records over several chains land in shared
/// transactions, yet every chain stays unbroken and gapless, and one bad record (a duplicate id)
/// fails alone: the others of its group are still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_appends_keep_every_chain_whole_and_fail_only_the_bad_record() {
    for (db, store, conn) in stores().await {
        let companies: Vec<CompanyId> = (0..3).map(|_| CompanyId::from_uuid(id())).collect();
        let duplicate = at(companies[0], 0);
        store.record(duplicate.clone()).await.unwrap();
        let mut tasks = Vec::new();
        for n in 1..=300_i64 {
            let store = store.clone();
            let record = if n == 150 {
                duplicate.clone()
            } else {
                at(companies[usize::try_from(n % 3).unwrap()], n)
            };
            tasks.push(tokio::spawn(async move { (n, store.record(record).await) }));
        }
        for t in tasks {
            let (n, result) = t.await.unwrap();
            assert_eq!(
                result.is_err(),
                n == 150,
                "{}: record {n}: {result:?}",
                db.backend
            );
        }
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        let mut total = 0;
        for c in &companies {
            let report = svc.verify_chain(&chain_name(Some(*c))).await.unwrap();
            assert!(report.ok, "{}: {report:?}", db.backend);
            let (head_seq, _) = store.head(&chain_name(Some(*c))).await.unwrap().unwrap();
            assert_eq!(u64::try_from(head_seq).unwrap(), report.checked, "gapless");
            total += report.checked;
        }
        // 299 good records plus the first copy of the duplicate.
        assert_eq!(total, 300, "{}", db.backend);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM audit_events").await, 300);
    }
}

/// The head's MAC follows the last record of every append, over several chains in one
/// transaction, without the store writing it (the `audit_head_follows` trigger); a record
/// inserted without chain fields leaves every head alone.
#[tokio::test]
async fn each_head_follows_the_last_record_of_its_chain() {
    for (db, store, conn) in stores().await {
        let a = CompanyId::from_uuid(id());
        let b = CompanyId::from_uuid(id());
        store.record(at(a, 0)).await.unwrap();
        // One transaction, two chains, several records each.
        let c = company();
        let owner = user(&c, &format!("{}@example.com", id().simple()), Role::Owner);
        let records: Vec<AuditRecord> = [a, b, a, b, b]
            .iter()
            .enumerate()
            .map(|(n, company)| at(*company, i64::try_from(n).unwrap() + 1))
            .collect();
        ::accounts::AccountRepository::create_company_with_owner(
            store.as_ref(),
            &c,
            &owner,
            records,
        )
        .await
        .unwrap();
        for (company, records) in [(a, 3), (b, 3)] {
            let chain = chain_name(Some(company));
            let page = store.chain_page(&chain, 0, 100).await.unwrap();
            let last = page.last().unwrap();
            assert_eq!(page.len(), records, "{}", db.backend);
            assert_eq!(
                store.head(&chain).await.unwrap(),
                Some((last.seq, last.mac)),
                "{}: {chain}",
                db.backend
            );
        }
        let before = store.head(&chain_name(Some(a))).await.unwrap();
        let stray = id().simple().to_string();
        let sql = match db.backend {
            "postgres" => format!(
                "INSERT INTO audit_events (id, at, action, outcome, details) VALUES ('{stray}', now(), 'user.created', 'success', '{{}}')"
            ),
            _ => format!(
                "INSERT INTO audit_events (id, at, action, outcome, details) VALUES (X'{stray}', '2026-11-21 12:00:00+00:00', 'user.created', 'success', '{{}}')"
            ),
        };
        conn.execute_unprepared(&sql).await.unwrap();
        assert_eq!(store.head(&chain_name(Some(a))).await.unwrap(), before);
    }
}

/// A company's alerts page newest first from a cursor: alerts raised at the same instant are
/// neither skipped nor repeated (ties go by id), fractions of a second survive the round trip
/// (the cursor names exactly the stored time), another company's and other statuses' alerts
/// never appear, and an alert raised between two pages does not shift the next one.
#[tokio::test]
async fn alerts_page_by_cursor_without_gaps_or_repeats() {
    use ::audit::Alert;
    for (db, store, _) in stores().await {
        let b = db.backend;
        let company = CompanyId::from_uuid(id());
        let other = CompanyId::from_uuid(id());
        let alert = |company: CompanyId, at: chrono::DateTime<chrono::Utc>, status: &str| Alert {
            id: id(),
            company_id: Some(company),
            at,
            rule: "repeated_login_failures".into(),
            severity: "medium".into(),
            summary: "5 failed logins within 15 minutes".into(),
            subject: id().to_string(),
            status: status.into(),
            record_id: id(),
        };
        // Seven open alerts over four instants (three share one, two another, in microseconds
        // as PostgreSQL keeps them), a dismissed one, and another company's.
        let instants: Vec<_> = [0_i64, 1, 1, 1, 2, 2, 3]
            .iter()
            .map(|s| t0() + chrono::Duration::microseconds(s * 1_500_001))
            .collect();
        let mut mine: Vec<Alert> = instants
            .iter()
            .map(|at| alert(company, *at, Alert::OPEN))
            .collect();
        let mut all = mine.clone();
        all.push(alert(company, instants[3], Alert::DISMISSED));
        all.push(alert(other, instants[3], Alert::OPEN));
        let chain = chain_name(Some(company));
        assert!(store.save_review(&chain, 0, 1, all).await.unwrap(), "{b}");
        mine.sort_by_key(|a| std::cmp::Reverse((a.at, a.id)));
        let mut seen = Vec::new();
        let mut after = None;
        for page in 0.. {
            assert!(page < 10, "{b}: paging does not end");
            let got = store
                .alerts(Some(company), Some(Alert::OPEN.into()), after, 3)
                .await
                .unwrap();
            if page == 0 {
                // Raised after the first page was read: newer than the cursor, so not in the
                // pages that follow.
                let late = alert(company, instants[6] + chrono::Duration::seconds(1), "open");
                assert!(store.save_review(&chain, 1, 2, vec![late]).await.unwrap());
            }
            let Some(last) = got.last() else { break };
            after = Some(last.cursor());
            seen.extend(got);
        }
        assert_eq!(seen, mine, "{b}");
        // The cursor of the oldest alert ends the listing; the newest one's leaves the rest.
        let oldest = mine[6].cursor();
        assert!(
            store
                .alerts(Some(company), None, Some(oldest), 10)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        let rest = store
            .alerts(
                Some(company),
                Some(Alert::OPEN.into()),
                Some(mine[0].cursor()),
                10,
            )
            .await
            .unwrap();
        assert_eq!(rest, mine[1..].to_vec(), "{b}");
    }
}

/// Retention removes old records and the alerts they raised; the chain still verifies from its
/// checkpoint and appends continue.
#[tokio::test]
async fn retention_purges_old_records_and_the_chain_still_verifies() {
    for (db, store, conn) in stores().await {
        let company = CompanyId::from_uuid(id());
        for n in 0..10 {
            store.record(at(company, n * 86_400)).await.unwrap();
        }
        let chain = chain_name(Some(company));
        // Alerts raised by the records of days 1 and 8.
        let alert = |day: i64| ::audit::Alert {
            id: id(),
            company_id: Some(company),
            at: t0() + chrono::Duration::days(day),
            rule: "repeated_login_failures".into(),
            severity: "medium".into(),
            summary: "5 failed logins for ana@example.com within 15 minutes".into(),
            subject: "ana@example.com".into(),
            status: "open".into(),
            record_id: id(),
        };
        assert!(
            store
                .save_review(&chain, 0, 10, vec![alert(1), alert(8)])
                .await
                .unwrap()
        );
        // Now is day 12: a 5-day retention keeps days 7, 8 and 9.
        let clock = Arc::new(ManualClock::new(t0() + chrono::Duration::days(12)));
        let svc = service(&store, clock);
        let removed = svc.purge(chrono::Duration::days(5)).await.unwrap();
        assert_eq!(removed, 7, "{}", db.backend);
        assert_eq!(store.checkpoint(&chain).await.unwrap().seq, 7);
        let kept: Vec<_> = store
            .alerts(Some(company), None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.at)
            .collect();
        assert_eq!(
            kept,
            vec![t0() + chrono::Duration::days(8)],
            "{}",
            db.backend
        );
        let report = svc.verify_chain(&chain).await.unwrap();
        assert!(
            report.ok && report.checked == 3,
            "{}: {report:?}",
            db.backend
        );
        // Appends continue after a purge.
        store.record(at(company, 12 * 86_400)).await.unwrap();
        assert!(svc.verify_chain(&chain).await.unwrap().ok);
        assert_eq!(
            count(
                &conn,
                &format!("SELECT COUNT(*) FROM audit_events WHERE chain = '{chain}'")
            )
            .await,
            4
        );
    }
}

#[tokio::test]
async fn edits_deletions_and_reordering_in_the_database_are_detected() {
    for (db, store, conn) in stores().await {
        let company = CompanyId::from_uuid(id());
        for n in 0..6 {
            store.record(at(company, n)).await.unwrap();
        }
        let chain = chain_name(Some(company));
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        assert!(svc.verify_chain(&chain).await.unwrap().ok);
        let exec = |sql: String| {
            let conn = conn.clone();
            async move {
                conn.execute_raw(Statement::from_string(conn.get_database_backend(), sql))
                    .await
                    .unwrap()
            }
        };
        let id_of = |seq: i64| {
            let store = store.clone();
            let chain = chain.clone();
            async move {
                store
                    .chain_page(&chain, seq - 1, 1)
                    .await
                    .unwrap()
                    .remove(0)
                    .id
            }
        };
        // An edited field.
        let third = id_of(3).await;
        exec(format!(
            "UPDATE audit_events SET outcome = 'failure' WHERE chain = '{chain}' AND seq = 3"
        ))
        .await;
        let report = svc.verify_chain(&chain).await.unwrap();
        assert_eq!(
            report.first_broken_id,
            Some(third),
            "{}: {report:?}",
            db.backend
        );
        exec(format!(
            "UPDATE audit_events SET outcome = 'success' WHERE chain = '{chain}' AND seq = 3"
        ))
        .await;
        assert!(svc.verify_chain(&chain).await.unwrap().ok, "restored");
        // Reordering: swap the sequence numbers of records 4 and 5.
        let fifth = id_of(5).await;
        exec(format!(
            "UPDATE audit_events SET seq = -4 WHERE chain = '{chain}' AND seq = 4"
        ))
        .await;
        exec(format!(
            "UPDATE audit_events SET seq = 4 WHERE chain = '{chain}' AND seq = 5"
        ))
        .await;
        exec(format!(
            "UPDATE audit_events SET seq = 5 WHERE chain = '{chain}' AND seq = -4"
        ))
        .await;
        let report = svc.verify_chain(&chain).await.unwrap();
        assert!(!report.ok, "{}: reordering", db.backend);
        // The first record out of place is the original fifth, now carrying sequence 4.
        assert_eq!(report.first_broken_id, Some(fifth), "{}", db.backend);
        exec(format!(
            "UPDATE audit_events SET seq = -4 WHERE chain = '{chain}' AND seq = 5"
        ))
        .await;
        exec(format!(
            "UPDATE audit_events SET seq = 5 WHERE chain = '{chain}' AND seq = 4"
        ))
        .await;
        exec(format!(
            "UPDATE audit_events SET seq = 4 WHERE chain = '{chain}' AND seq = -4"
        ))
        .await;
        assert!(svc.verify_chain(&chain).await.unwrap().ok, "restored");
        // A deleted record, then a deleted last record.
        exec(format!(
            "DELETE FROM audit_events WHERE chain = '{chain}' AND seq = 2"
        ))
        .await;
        assert_eq!(
            svc.verify_chain(&chain).await.unwrap().first_broken_id,
            Some(third),
            "{}",
            db.backend
        );
        exec(format!(
            "DELETE FROM audit_events WHERE chain = '{chain}' AND seq <= 5"
        ))
        .await;
        let report = svc.verify_chain(&chain).await.unwrap();
        assert!(!report.ok, "{}: {report:?}", db.backend);
    }
}

#[tokio::test]
async fn a_record_written_around_the_chain_is_reported() {
    for (db, store, _) in stores().await {
        let company = CompanyId::from_uuid(id());
        store.record(at(company, 0)).await.unwrap();
        let conn = store.connection();
        let sql = match db.backend {
            "postgres" => format!(
                "INSERT INTO audit_events (id, company_id, at, action, outcome, details) VALUES ('{}', '{}', now(), 'user.created', 'success', '{{}}')",
                id(),
                company
            ),
            _ => format!(
                "INSERT INTO audit_events (id, company_id, at, action, outcome, details) VALUES (X'{}', X'{}', '2026-11-21 12:00:00+00:00', 'user.created', 'success', '{{}}')",
                id().simple(),
                company.as_uuid().simple()
            ),
        };
        conn.execute_raw(Statement::from_string(conn.get_database_backend(), sql))
            .await
            .unwrap();
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        let report = svc.verify_chain(&chain_name(Some(company))).await.unwrap();
        assert!(!report.ok, "{}: {report:?}", db.backend);
    }
}

#[tokio::test]
async fn the_periodic_review_visits_only_chains_that_moved() {
    for (db, store, _) in stores().await {
        let (a, b) = (CompanyId::from_uuid(id()), CompanyId::from_uuid(id()));
        store.record(at(a, 0)).await.unwrap();
        store.record(at(b, 0)).await.unwrap();
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        let mut pending = store.chains_to_review().await.unwrap();
        pending.sort();
        let mut expected = vec![chain_name(Some(a)), chain_name(Some(b))];
        expected.sort();
        assert_eq!(pending, expected, "{}", db.backend);
        svc.review_all().await.unwrap();
        assert!(
            store.chains_to_review().await.unwrap().is_empty(),
            "{}",
            db.backend
        );
        store.record(at(b, 1)).await.unwrap();
        assert_eq!(
            store.chains_to_review().await.unwrap(),
            vec![chain_name(Some(b))]
        );
    }
}

/// A successful login of `u` from `ip` as the sessions service records it (with the role the
/// review's "new IP" rule looks at, and the network when it is not the address itself).
fn login_of(u: &User, ip: &str, seconds: i64) -> AuditRecord {
    let mut r = login_before_networks(u, ip, seconds);
    let network = network_of(ip);
    if network != ip {
        r.details["network"] = network.into();
    }
    r
}

/// The same login as recorded before logins named their network (m0015).
fn login_before_networks(u: &User, ip: &str, seconds: i64) -> AuditRecord {
    let ctx = RequestContext {
        ip: Some(ip.parse().unwrap()),
        ..RequestContext::default()
    };
    AuditRecord::new(
        id(),
        t0() + chrono::Duration::seconds(seconds),
        Action::SESSION_LOGIN,
        Outcome::Success,
        &ctx,
    )
    .company(u.company_id)
    .actor(u.id)
    .details(serde_json::json!({ "role": u.role.as_str() }))
}

fn network_of(ip: &str) -> String {
    kernel::ClientNet::from(ip.parse::<std::net::IpAddr>().unwrap()).to_string()
}

/// A new company whose Owner's sign-up records `logins`; returns the company, the Owner and the
/// company's chain.
async fn company_of_owner(
    store: &Arc<SeaStore>,
    logins: impl FnOnce(&User) -> Vec<AuditRecord>,
) -> (Company, User, String) {
    let c = company();
    let owner = user(&c, &format!("o{}@example.com", id().simple()), Role::Owner);
    ::accounts::AccountRepository::create_company_with_owner(
        store.as_ref(),
        &c,
        &owner,
        logins(&owner),
    )
    .await
    .unwrap();
    let chain = chain_name(Some(c.id));
    (c, owner, chain)
}

/// `prior_logins` as the review asks it: the address and its network.
async fn asked(
    store: &SeaStore,
    chain: &str,
    actor: UserId,
    ip: Option<&str>,
    before: i64,
) -> (bool, bool) {
    store
        .prior_logins(
            chain,
            actor,
            ip.map(str::to_owned),
            ip.map(network_of),
            before,
        )
        .await
        .unwrap()
}

/// AUD-7's "new IP" rule asks whether an Owner or Admin logged in before, at all and from this
/// address. The answer is that user's, strictly before the record, in that chain only, and
/// remembers logins however many others came since: the review used to look only at the
/// chain's newest 10,000 logins, so after a busy week an Owner from a new address raised no
/// alert at all. Here 10,050 logins of a vendor separate the Owner's two.
#[tokio::test]
async fn prior_logins_remember_every_earlier_login_of_the_user() {
    for (db, store, _) in stores().await {
        let (c, owner, chain) =
            company_of_owner(&store, |o| vec![login_of(o, "198.51.100.7", 0)]).await;
        let vendor = user(&c, &format!("v{}@example.com", id().simple()), Role::Vendor);
        let first = store.chain_page(&chain, 0, 1).await.unwrap()[0].seq;
        let others: Vec<AuditRecord> = (1..=10_050)
            .map(|n| login_of(&vendor, "192.0.2.1", n))
            .collect();
        ::accounts::AccountRepository::insert_user(store.as_ref(), &vendor, others)
            .await
            .unwrap();
        let mut failure = login_of(&owner, "203.0.113.9", 20_000);
        failure.outcome = Outcome::Failure;
        store.record(failure).await.unwrap();
        let (last, _) = store.head(&chain).await.unwrap().unwrap();
        let next = last + 1;

        let asked = |actor, ip, before| asked(&store, &chain, actor, ip, before);
        let b = db.backend;
        assert_eq!(
            asked(owner.id, Some("198.51.100.7"), next).await,
            (true, true),
            "{b}"
        );
        // A failed login from an address is not a login from it.
        assert_eq!(
            asked(owner.id, Some("203.0.113.9"), next).await,
            (true, false),
            "{b}"
        );
        assert_eq!(asked(owner.id, None, next).await, (true, false), "{b}");
        assert_eq!(
            asked(owner.id, Some("198.51.100.7"), first).await,
            (false, false),
            "{b}"
        );
        assert_eq!(
            asked(vendor.id, Some("192.0.2.1"), next).await,
            (true, true),
            "{b}"
        );
        assert_eq!(
            asked(UserId::from_uuid(id()), Some("192.0.2.1"), next).await,
            (false, false),
            "{b}"
        );
        let other_chain = chain_name(Some(CompanyId::from_uuid(id())));
        assert_eq!(
            store
                .prior_logins(
                    &other_chain,
                    owner.id,
                    Some("198.51.100.7".into()),
                    Some("198.51.100.7".into()),
                    next,
                )
                .await
                .unwrap(),
            (false, false),
            "{b}"
        );

        // The review: the Owner's login from a new address raises the alert; the vendor's
        // logins and the Owner's first one raise none.
        store
            .record(login_of(&owner, "203.0.113.9", 20_001))
            .await
            .unwrap();
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        let raised: Vec<String> = svc
            .review_chain(&chain)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.rule)
            .collect();
        assert_eq!(raised, vec!["new_ip_privileged_login".to_owned()], "{b}");
    }
}

/// AUD-7 counts an IPv6 client by its /64: an Owner whose privacy address rotates within a
/// network it used before is not at a new place, a new /64 is, and an IPv4-mapped address is its
/// IPv4 address either way round. Logins recorded before logins named their network still
/// count, by their exact address.
#[tokio::test]
async fn prior_logins_count_an_ipv6_network_as_one_place() {
    for (db, store, _) in stores().await {
        let (_, owner, chain) = company_of_owner(&store, |o| {
            vec![
                login_of(o, "2001:db8:1:2:aaaa::1", 0),
                login_of(o, "198.51.100.7", 1),
                login_of(o, "::ffff:203.0.113.5", 2),
                login_before_networks(o, "2001:db8:5:5::1", 3),
            ]
        })
        .await;
        let (last, _) = store.head(&chain).await.unwrap().unwrap();
        let from = |ip| asked(&store, &chain, owner.id, Some(ip), last + 1);
        let b = db.backend;
        for (ip, known) in [
            // Another address of a /64 the Owner used.
            ("2001:db8:1:2:bbbb:cccc:dddd:eeee", true),
            ("2001:db8:1:2::", true),
            // The next /64 is a new place.
            ("2001:db8:1:3:aaaa::1", false),
            // Mapped and plain IPv4, either way round.
            ("::ffff:198.51.100.7", true),
            ("203.0.113.5", true),
            ("203.0.113.6", false),
            // A login from before m0015 counts by its exact address only.
            ("2001:db8:5:5::1", true),
            ("2001:db8:5:5::2", false),
        ] {
            assert_eq!(from(ip).await, (true, known), "{b}: {ip}");
        }
        let rotated = |network: Option<&str>, before| {
            let store = store.clone();
            let (chain, network) = (chain.clone(), network.map(str::to_owned));
            async move {
                store
                    .prior_logins(
                        &chain,
                        owner.id,
                        Some("2001:db8:1:2::9".into()),
                        network,
                        before,
                    )
                    .await
                    .unwrap()
            }
        };
        // Without the network, the question is the exact address, as before.
        assert_eq!(rotated(None, last + 1).await, (true, false), "{b}");
        // Earlier than the login that named the network: unknown.
        let first = store.chain_page(&chain, 0, 1).await.unwrap()[0].seq;
        assert_eq!(
            rotated(Some("2001:db8:1:2::/64"), first).await,
            (false, false),
            "{b}"
        );

        // The review (past the setup's logins): a rotated address raises nothing; a new /64
        // raises one alert naming it.
        let svc = service(&store, Arc::new(ManualClock::new(t0())));
        svc.review_chain(&chain).await.unwrap();
        store
            .record(login_of(&owner, "2001:db8:1:2:1234::5", 10))
            .await
            .unwrap();
        store
            .record(login_of(&owner, "2001:db8:9:9::1", 11))
            .await
            .unwrap();
        let raised: Vec<(String, String)> = svc
            .review_chain(&chain)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.rule, a.subject))
            .collect();
        assert_eq!(
            raised,
            vec![(
                "new_ip_privileged_login".to_owned(),
                format!("{}@2001:db8:9:9::/64", owner.id)
            )],
            "{b}"
        );
    }
}
