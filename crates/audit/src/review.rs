//! Automated review (AUD-7): rules over the event stream that raise alerts.

use kernel::{CompanyId, Duration, Timestamp};
use serde::Serialize;
use uuid::Uuid;

use crate::ChainedRecord;

/// The network a stored client address belongs to, as the per-address rule counts it: an IPv4
/// address as it is, an IPv6 one as its /64 (`2001:db8:1:2::/64`), like the per-IP limits
/// (`kernel::ClientNet`); a client rotating addresses inside its /64 is still one source. Text
/// that is no address is kept as it is.
pub(crate) fn client_network(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>().map_or_else(
        |_| ip.to_owned(),
        |addr| kernel::ClientNet::from(addr).to_string(),
    )
}

/// Thresholds of the review rules; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertThresholds {
    /// Failed logins for one account within the window.
    pub account_failures: usize,
    /// Failed logins from one IP within the window.
    pub ip_failures: usize,
    /// The window of the failure rules.
    pub failure_window: Duration,
    /// Exports by one user within the export window.
    pub export_burst: usize,
    /// The window of the export rule.
    pub export_window: Duration,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            account_failures: 5,
            ip_failures: 20,
            failure_window: Duration::minutes(15),
            export_burst: 3,
            export_window: Duration::minutes(10),
        }
    }
}

/// A raised alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Id.
    pub id: Uuid,
    /// Tenant (`None`: platform-wide, e.g. failures for unknown emails).
    pub company_id: Option<CompanyId>,
    /// When the triggering event happened.
    pub at: Timestamp,
    /// Rule name.
    pub rule: String,
    /// `low`, `medium`, `high`.
    pub severity: String,
    /// One line for a human.
    pub summary: String,
    /// What it is about (an email, an IP, a user); alerts are deduplicated per rule and subject.
    pub subject: String,
    /// [`Alert::OPEN`] when raised; [`Alert::INCIDENT`] once an incident was opened from it,
    /// [`Alert::DISMISSED`] once triage judged it needs none.
    pub status: String,
    /// The triggering record.
    pub record_id: Uuid,
}

/// A page of alerts, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPage {
    /// The alerts.
    pub items: Vec<Alert>,
    /// Where the next page starts; `None` after the last.
    pub next_cursor: Option<kernel::TimeCursor>,
}

impl Alert {
    /// Where the page after this alert starts, in the listing's order.
    #[must_use]
    pub fn cursor(&self) -> kernel::TimeCursor {
        kernel::TimeCursor {
            at: self.at,
            id: self.id,
        }
    }

    /// Raised and not handled yet.
    pub const OPEN: &'static str = "open";
    /// An incident was opened from it (`POST /v1/incidents` with its `alert_id`).
    pub const INCIDENT: &'static str = "incident";
    /// Triage judged it needs no incident.
    pub const DISMISSED: &'static str = "dismissed";
}

/// What a rule needs to know besides the record itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Failed logins for the same email within the failure window, this one included.
    pub account_failures: usize,
    /// Failed logins from the same IP within the failure window, this one included.
    pub ip_failures: usize,
    /// Earlier successful logins of the same user: `(any at all, any from this IP)`.
    pub prior_logins: (bool, bool),
    /// Exports by the same actor within the export window, this one included.
    pub exports: usize,
}

/// What a rule needs fetched for `record` (so the review queries only what applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: not a reviewed event.
    Nothing,
    /// Failure counts.
    Failures,
    /// Prior logins of a privileged user.
    PriorLogins,
    /// Export count.
    Exports,
    /// Nothing beyond the record itself (it alerts by what it is).
    Itself,
}

fn detail<'a>(record: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    record.get(key).and_then(serde_json::Value::as_str)
}

/// Which context `record` needs.
#[must_use]
pub fn need(record: &ChainedRecord) -> Need {
    match (record.action.as_str(), record.outcome.as_str()) {
        ("session.login", "failure") => Need::Failures,
        ("session.login", "success") => {
            let details: serde_json::Value =
                serde_json::from_str(&record.details).unwrap_or_default();
            if matches!(detail(&details, "role"), Some("owner" | "admin")) {
                Need::PriorLogins
            } else {
                Need::Nothing
            }
        }
        ("audit.exported", _) => Need::Exports,
        ("backup.failed", _) => Need::Itself,
        // The platform's operator changed how a user logs in (`incrementa users reset-password`,
        // `reset-mfa`): the company learns of it in its alerts, not only the user by mail. So it
        // does when an Owner's or Admin's password was reset with an e-mailed code: whoever
        // reads that mailbox holds the account.
        ("user.password_changed" | "mfa.disabled", "success") => {
            let details: serde_json::Value =
                serde_json::from_str(&record.details).unwrap_or_default();
            match detail(&details, "by") {
                Some("operator") => Need::Itself,
                Some("password_reset")
                    if matches!(detail(&details, "role"), Some("owner" | "admin")) =>
                {
                    Need::Itself
                }
                _ => Need::Nothing,
            }
        }
        // An Owner or Admin moved their account to another mailbox: the channel that resets
        // their password changed hands, which the company should see.
        ("user.email_changed", "success") => {
            let details: serde_json::Value =
                serde_json::from_str(&record.details).unwrap_or_default();
            if matches!(detail(&details, "role"), Some("owner" | "admin")) {
                Need::Itself
            } else {
                Need::Nothing
            }
        }
        // Someone's account was moved to another mailbox without them: whatever the role, the
        // mover held its password and step-up, which the company must look into.
        ("user.email_change_reverted", "success") => Need::Itself,
        _ => Need::Nothing,
    }
}

/// How long an open alert of `rule` suppresses a new one for the same subject.
#[must_use]
pub fn dedupe_window(rule: &str, t: &AlertThresholds) -> Duration {
    match rule {
        "export_burst" => t.export_window,
        "new_ip_privileged_login" => Duration::hours(24),
        _ => t.failure_window,
    }
}

/// Applies every rule to one record. Pure: the review gathers `ctx` from storage.
#[must_use]
pub fn evaluate(
    record: &ChainedRecord,
    ctx: &Context,
    t: &AlertThresholds,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Vec<Alert> {
    let details: serde_json::Value = serde_json::from_str(&record.details).unwrap_or_default();
    let mut out = Vec::new();
    let mut alert = |rule: &str, severity: &str, subject: String, summary: String| Alert {
        id: new_id(),
        company_id: record.company_id,
        at: record.at,
        rule: rule.to_owned(),
        severity: severity.to_owned(),
        summary,
        subject,
        status: Alert::OPEN.to_owned(),
        record_id: record.id,
    };
    match need(record) {
        Need::Failures => {
            let email = detail(&details, "email")
                .unwrap_or("(malformed email)")
                .to_owned();
            if detail(&details, "reason") == Some("account_disabled") {
                out.push(alert(
                    "deactivated_user_login",
                    "high",
                    record
                        .actor_id
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| email.clone()),
                    format!("a deactivated user tried to log in ({email})"),
                ));
            }
            if ctx.account_failures >= t.account_failures {
                out.push(alert(
                    "repeated_login_failures",
                    "medium",
                    email.clone(),
                    format!(
                        "{} failed logins for {email} within {} minutes",
                        ctx.account_failures,
                        t.failure_window.num_minutes()
                    ),
                ));
            }
            if let Some(ip) = &record.ip
                && ctx.ip_failures >= t.ip_failures
            {
                let source = client_network(ip);
                out.push(alert(
                    "ip_login_failures",
                    "high",
                    source.clone(),
                    format!(
                        "{} failed logins from {source} within {} minutes",
                        ctx.ip_failures,
                        t.failure_window.num_minutes()
                    ),
                ));
            }
        }
        Need::PriorLogins => {
            let (any, same_ip) = ctx.prior_logins;
            if any && !same_ip {
                let ip = record.ip.clone().unwrap_or_default();
                let network = client_network(&ip);
                let user = record.actor_id.map(|a| a.to_string()).unwrap_or_default();
                // One alert per new network: the next address of the same /64 is not new.
                let place = if network == ip {
                    ip.clone()
                } else {
                    format!("{ip} (network {network})")
                };
                out.push(alert(
                    "new_ip_privileged_login",
                    "medium",
                    format!("{user}@{network}"),
                    format!(
                        "an {} logged in from a new IP address {place}",
                        detail(&details, "role").unwrap_or("administrator")
                    ),
                ));
            }
        }
        Need::Exports => {
            if ctx.exports >= t.export_burst {
                let user = record.actor_id.map(|a| a.to_string()).unwrap_or_default();
                out.push(alert(
                    "export_burst",
                    "high",
                    user,
                    format!(
                        "{} audit exports within {} minutes",
                        ctx.exports,
                        t.export_window.num_minutes()
                    ),
                ));
            }
        }
        Need::Itself => {
            let target = record.target.clone().unwrap_or_default();
            let user = target.strip_prefix("user:").unwrap_or(&target).to_owned();
            let (rule, severity, summary) = match record.action.as_str() {
                "user.password_changed" if detail(&details, "by") == Some("password_reset") => (
                    "privileged_password_reset",
                    "medium",
                    format!(
                        "the password of {} {user} was reset with an e-mailed code",
                        detail(&details, "role").unwrap_or("user")
                    ),
                ),
                "user.email_changed" => (
                    "privileged_email_change",
                    "medium",
                    format!(
                        "the {} {user} changed the account's e-mail address from {} to {}",
                        detail(&details, "role").unwrap_or("user"),
                        detail(&details, "from").unwrap_or("?"),
                        detail(&details, "to").unwrap_or("?"),
                    ),
                ),
                "user.email_change_reverted" => (
                    "email_change_reverted",
                    "high",
                    format!(
                        "the {} {user}'s move from {} to {} was undone from the old address: \
                         whoever moved it knew the password",
                        detail(&details, "role").unwrap_or("user"),
                        detail(&details, "to").unwrap_or("?"),
                        detail(&details, "from").unwrap_or("?"),
                    ),
                ),
                "user.password_changed" => (
                    "operator_password_reset",
                    "high",
                    format!("the platform's operator reset the password of user {user}"),
                ),
                "mfa.disabled" => (
                    "operator_mfa_reset",
                    "high",
                    format!("the platform's operator turned MFA off for user {user}"),
                ),
                _ => (
                    "backup_failed",
                    "high",
                    format!(
                        "a backup could not be written to {}",
                        detail(&details, "destination").unwrap_or("a destination")
                    ),
                ),
            };
            out.push(alert(rule, severity, target, summary));
        }
        Need::Nothing => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(action: &str, outcome: &str, details: serde_json::Value) -> ChainedRecord {
        ChainedRecord {
            seq: 1,
            id: Uuid::from_u128(1),
            company_id: None,
            at: Timestamp::default(),
            actor_id: Some(kernel::UserId::from_uuid(Uuid::from_u128(9))),
            action: action.into(),
            target: None,
            outcome: outcome.into(),
            ip: Some("198.51.100.4".into()),
            user_agent: None,
            request_id: None,
            details: details.to_string(),
            key_id: 1,
            mac: [0; 32],
        }
    }

    fn rules(r: &ChainedRecord, ctx: Context) -> Vec<String> {
        let mut n = 0;
        evaluate(r, &ctx, &AlertThresholds::default(), &mut || {
            n += 1;
            Uuid::from_u128(n)
        })
        .into_iter()
        .map(|a| a.rule)
        .collect()
    }

    #[test]
    fn a_failed_backup_destination_raises_a_high_alert() {
        let r = rec(
            "backup.failed",
            "failure",
            serde_json::json!({ "destination": "/mnt/remote", "error": "disk full" }),
        );
        assert_eq!(need(&r), Need::Itself);
        assert_eq!(rules(&r, Context::default()), ["backup_failed"]);
        assert!(
            rules(
                &rec("backup.created", "success", serde_json::json!({})),
                Context::default()
            )
            .is_empty()
        );
    }

    /// A password reset with an e-mailed code raises a medium alert for an Owner or Admin, and
    /// none for the other roles.
    #[test]
    fn a_privileged_users_reset_by_mail_raises_a_medium_alert() {
        for (role, alerted) in [
            ("owner", true),
            ("admin", true),
            ("manager", false),
            ("vendor", false),
        ] {
            let mut r = rec(
                "user.password_changed",
                "success",
                serde_json::json!({ "by": "password_reset", "role": role }),
            );
            r.actor_id = None;
            r.target = Some(format!("user:{}", Uuid::from_u128(5)));
            let alerts = evaluate(
                &r,
                &Context::default(),
                &AlertThresholds::default(),
                &mut || Uuid::from_u128(9),
            );
            if alerted {
                assert_eq!(need(&r), Need::Itself, "{role}");
                assert_eq!(alerts.len(), 1, "{role}");
                assert_eq!(
                    (alerts[0].rule.as_str(), alerts[0].severity.as_str()),
                    ("privileged_password_reset", "medium")
                );
                assert!(alerts[0].summary.contains(role), "{}", alerts[0].summary);
                assert_eq!(alerts[0].subject, format!("user:{}", Uuid::from_u128(5)));
            } else {
                assert_eq!(need(&r), Need::Nothing, "{role}");
            }
        }
    }

    /// An undone change of address raises a high alert for every role, naming both addresses.
    #[test]
    fn an_undone_change_of_address_raises_a_high_alert_for_any_role() {
        for role in ["owner", "admin", "manager", "vendor"] {
            let mut r = rec(
                "user.email_change_reverted",
                "success",
                serde_json::json!({ "from": "ana@atacante.mx", "to": "ana@example.com", "role": role }),
            );
            r.target = Some(format!("user:{}", Uuid::from_u128(5)));
            assert_eq!(need(&r), Need::Itself, "{role}");
            let alerts = evaluate(
                &r,
                &Context::default(),
                &AlertThresholds::default(),
                &mut || Uuid::from_u128(9),
            );
            assert_eq!(alerts.len(), 1, "{role}");
            let alert = &alerts[0];
            assert_eq!(
                (alert.rule.as_str(), alert.severity.as_str()),
                ("email_change_reverted", "high")
            );
            assert!(
                alert.summary.contains(role)
                    && alert
                        .summary
                        .contains("from ana@example.com to ana@atacante.mx"),
                "{}",
                alert.summary
            );
            assert_eq!(alert.subject, format!("user:{}", Uuid::from_u128(5)));
        }
    }

    /// An Owner's or Admin's change of address raises a medium alert naming both addresses;
    /// other roles' raise none, nor does a request that was never confirmed.
    #[test]
    fn a_privileged_users_change_of_address_raises_a_medium_alert() {
        for (role, alerted) in [
            ("owner", true),
            ("admin", true),
            ("manager", false),
            ("vendor", false),
        ] {
            let mut r = rec(
                "user.email_changed",
                "success",
                serde_json::json!({ "from": "ana@example.com", "to": "ana@nuevo.mx", "role": role }),
            );
            r.target = Some(format!("user:{}", Uuid::from_u128(5)));
            let alerts = evaluate(
                &r,
                &Context::default(),
                &AlertThresholds::default(),
                &mut || Uuid::from_u128(9),
            );
            if alerted {
                assert_eq!(alerts.len(), 1, "{role}");
                assert_eq!(
                    (alerts[0].rule.as_str(), alerts[0].severity.as_str()),
                    ("privileged_email_change", "medium")
                );
                assert!(
                    alerts[0].summary.contains(role)
                        && alerts[0].summary.contains("ana@example.com")
                        && alerts[0].summary.contains("ana@nuevo.mx"),
                    "{}",
                    alerts[0].summary
                );
                assert_eq!(alerts[0].subject, format!("user:{}", Uuid::from_u128(5)));
            } else {
                assert_eq!(need(&r), Need::Nothing, "{role}");
                assert!(alerts.is_empty(), "{role}");
            }
        }
        let asked = rec(
            "user.email_change_requested",
            "success",
            serde_json::json!({ "to": "ana@nuevo.mx", "role": "owner" }),
        );
        assert_eq!(need(&asked), Need::Nothing);
    }

    /// The operator's resets raise a high alert each, naming the user; the user's own change
    /// and disabling raise none.
    #[test]
    fn operator_resets_raise_high_alerts() {
        for (action, rule) in [
            ("user.password_changed", "operator_password_reset"),
            ("mfa.disabled", "operator_mfa_reset"),
        ] {
            let mut r = rec(action, "success", serde_json::json!({ "by": "operator" }));
            r.actor_id = None;
            r.target = Some(format!("user:{}", Uuid::from_u128(5)));
            assert_eq!(need(&r), Need::Itself, "{action}");
            let mut n = 0;
            let alerts = evaluate(
                &r,
                &Context::default(),
                &AlertThresholds::default(),
                &mut || {
                    n += 1;
                    Uuid::from_u128(n)
                },
            );
            assert_eq!(alerts.len(), 1, "{action}");
            let a = &alerts[0];
            assert_eq!((a.rule.as_str(), a.severity.as_str()), (rule, "high"));
            assert_eq!(a.subject, format!("user:{}", Uuid::from_u128(5)));
            assert!(
                a.summary.contains(&Uuid::from_u128(5).to_string()),
                "{}",
                a.summary
            );
            let own = rec(action, "success", serde_json::json!({}));
            assert_eq!(need(&own), Need::Nothing, "{action}");
            assert!(rules(&own, Context::default()).is_empty());
            let failed = rec(action, "failure", serde_json::json!({ "by": "operator" }));
            assert_eq!(need(&failed), Need::Nothing, "{action}");
        }
    }

    #[test]
    fn failures_trip_at_their_thresholds() {
        let r = rec(
            "session.login",
            "failure",
            serde_json::json!({ "reason": "invalid_credentials", "email": "a@x.mx" }),
        );
        assert_eq!(need(&r), Need::Failures);
        assert!(
            rules(
                &r,
                Context {
                    account_failures: 4,
                    ip_failures: 19,
                    ..Context::default()
                }
            )
            .is_empty()
        );
        assert_eq!(
            rules(
                &r,
                Context {
                    account_failures: 5,
                    ip_failures: 19,
                    ..Context::default()
                }
            ),
            vec!["repeated_login_failures"]
        );
        assert_eq!(
            rules(
                &r,
                Context {
                    account_failures: 1,
                    ip_failures: 20,
                    ..Context::default()
                }
            ),
            vec!["ip_login_failures"]
        );
    }

    #[test]
    fn a_deactivated_user_alerts_at_once() {
        let r = rec(
            "session.login",
            "failure",
            serde_json::json!({ "reason": "account_disabled", "email": "a@x.mx" }),
        );
        assert_eq!(
            rules(
                &r,
                Context {
                    account_failures: 1,
                    ip_failures: 1,
                    ..Context::default()
                }
            ),
            vec!["deactivated_user_login"]
        );
    }

    #[test]
    fn privileged_logins_from_new_addresses_but_not_the_first_login() {
        let admin = rec(
            "session.login",
            "success",
            serde_json::json!({ "role": "admin" }),
        );
        assert_eq!(need(&admin), Need::PriorLogins);
        assert!(
            rules(
                &admin,
                Context {
                    prior_logins: (false, false),
                    ..Context::default()
                }
            )
            .is_empty(),
            "first login: baseline"
        );
        assert!(
            rules(
                &admin,
                Context {
                    prior_logins: (true, true),
                    ..Context::default()
                }
            )
            .is_empty()
        );
        assert_eq!(
            rules(
                &admin,
                Context {
                    prior_logins: (true, false),
                    ..Context::default()
                }
            ),
            vec!["new_ip_privileged_login"]
        );
        let vendor = rec(
            "session.login",
            "success",
            serde_json::json!({ "role": "vendor" }),
        );
        assert_eq!(need(&vendor), Need::Nothing);
    }

    /// The new-address alert names an IPv6 client's /64 as its subject (one alert per new
    /// network) and shows both; an IPv4 address is its own subject.
    #[test]
    fn a_new_ipv6_network_is_the_alerts_subject() {
        let mut admin = rec(
            "session.login",
            "success",
            serde_json::json!({ "role": "admin" }),
        );
        admin.ip = Some("2001:db8:1:2:aaaa::7".into());
        let ctx = Context {
            prior_logins: (true, false),
            ..Context::default()
        };
        let alerts = evaluate(&admin, &ctx, &AlertThresholds::default(), &mut || {
            Uuid::nil()
        });
        let [alert] = alerts.as_slice() else {
            panic!("{alerts:?}")
        };
        let user = Uuid::from_u128(9);
        assert_eq!(alert.subject, format!("{user}@2001:db8:1:2::/64"));
        assert_eq!(
            alert.summary,
            "an admin logged in from a new IP address 2001:db8:1:2:aaaa::7 (network 2001:db8:1:2::/64)"
        );
        admin.ip = Some("198.51.100.4".into());
        let alerts = evaluate(&admin, &ctx, &AlertThresholds::default(), &mut || {
            Uuid::nil()
        });
        let [alert] = alerts.as_slice() else {
            panic!("{alerts:?}")
        };
        assert_eq!(alert.subject, format!("{user}@198.51.100.4"));
        assert_eq!(
            alert.summary,
            "an admin logged in from a new IP address 198.51.100.4"
        );
    }

    #[test]
    fn export_bursts() {
        let r = rec("audit.exported", "success", serde_json::json!({}));
        assert!(
            rules(
                &r,
                Context {
                    exports: 2,
                    ..Context::default()
                }
            )
            .is_empty()
        );
        assert_eq!(
            rules(
                &r,
                Context {
                    exports: 3,
                    ..Context::default()
                }
            ),
            vec!["export_burst"]
        );
    }
}
