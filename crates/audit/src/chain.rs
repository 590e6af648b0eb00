//! Tamper evidence (AUD-4): every company's records form a chain. Record `n` carries its sequence
//! number and `mac_n = HMAC(key, mac_{n-1} || canonical(record_n))`, keyed by a key derived from
//! the master key (never stored in the database). Editing, deleting, inserting or reordering
//! records breaks the chain at the first affected record.

use kernel::{CompanyId, Timestamp, UserId};
use uuid::Uuid;

/// The MAC of the record before the first one.
pub const GENESIS: [u8; 32] = [0; 32];

/// The chain a record belongs to: its company, or `platform` for events of no company.
#[must_use]
pub fn chain_name(company: Option<CompanyId>) -> String {
    company.map_or_else(|| "platform".to_owned(), |c| c.to_string())
}

/// Computes chain MACs (HMAC-SHA-256 in the crypto adapter).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ChainMac: Send + Sync {
    /// The key version new records use.
    fn current_key_id(&self) -> u32;
    /// `HMAC(key_id's key, previous || record)`, or `None` for an unknown key version.
    fn mac(&self, key_id: u32, previous: &[u8; 32], record: &[u8]) -> Option<[u8; 32]>;
}

/// A record as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    /// Position in its chain, from 1.
    pub seq: i64,
    /// Id.
    pub id: Uuid,
    /// Tenant.
    pub company_id: Option<CompanyId>,
    /// When (microsecond precision, as both databases keep it).
    pub at: Timestamp,
    /// Actor.
    pub actor_id: Option<UserId>,
    /// `noun.verb`.
    pub action: String,
    /// `kind:id`.
    pub target: Option<String>,
    /// `success`, `failure`, `denied`.
    pub outcome: String,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Details as stored JSON text.
    pub details: String,
    /// Key version of the MAC.
    pub key_id: u32,
    /// The MAC.
    pub mac: [u8; 32],
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            field(out, v.as_bytes());
        }
    }
}

impl ChainedRecord {
    /// The bytes the MAC covers: every field but the MAC, length-prefixed, in a fixed order.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.details.len());
        out.extend_from_slice(b"incrementa/audit/v1");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.key_id.to_be_bytes());
        field(&mut out, self.id.as_bytes());
        opt(&mut out, self.company_id.map(|c| c.to_string()).as_deref());
        field(&mut out, &self.at.timestamp_micros().to_be_bytes());
        opt(&mut out, self.actor_id.map(|a| a.to_string()).as_deref());
        field(&mut out, self.action.as_bytes());
        opt(&mut out, self.target.as_deref());
        field(&mut out, self.outcome.as_bytes());
        opt(&mut out, self.ip.as_deref());
        opt(&mut out, self.user_agent.as_deref());
        opt(&mut out, self.request_id.as_deref());
        field(&mut out, self.details.as_bytes());
        out
    }
}

/// Where verification starts: the last record removed by retention, or the genesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number of the last purged record (0: nothing purged).
    pub seq: i64,
    /// Its MAC.
    pub mac: [u8; 32],
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self {
            seq: 0,
            mac: GENESIS,
        }
    }
}

/// The outcome of verifying chains.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct VerifyReport {
    /// `true` when every record checked out.
    pub ok: bool,
    /// Records checked.
    pub checked: u64,
    /// The first record that does not fit (edited, inserted, out of order, or after a gap).
    pub first_broken_id: Option<Uuid>,
    /// Why, in a few words.
    pub reason: Option<String>,
}

/// Checks one chain record by record, in sequence order, from a checkpoint.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    previous: [u8; 32],
    checked: u64,
    broken: Option<(Option<Uuid>, String)>,
}

impl ChainVerifier {
    /// Starts after `checkpoint`.
    #[must_use]
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            expected_seq: checkpoint.seq.saturating_add(1),
            previous: checkpoint.mac,
            checked: 0,
            broken: None,
        }
    }

    /// Checks the next record (records must come in ascending `seq`). After the first break,
    /// further records are ignored.
    pub fn step(&mut self, record: &ChainedRecord, macs: &dyn ChainMac) {
        if self.broken.is_some() {
            return;
        }
        self.checked = self.checked.saturating_add(1);
        if record.seq != self.expected_seq {
            let why = if record.seq > self.expected_seq {
                format!(
                    "records {} to {} are missing",
                    self.expected_seq,
                    record.seq - 1
                )
            } else {
                format!("sequence {} appears out of order", record.seq)
            };
            self.broken = Some((Some(record.id), why));
            return;
        }
        match macs.mac(record.key_id, &self.previous, &record.canonical_bytes()) {
            Some(mac) if constant_time_eq(&mac, &record.mac) => {
                self.previous = record.mac;
                self.expected_seq = self.expected_seq.saturating_add(1);
            }
            Some(_) => {
                self.broken = Some((
                    Some(record.id),
                    format!("record {} was altered or forged", record.seq),
                ))
            }
            None => {
                self.broken = Some((
                    Some(record.id),
                    format!("key version {} is not configured", record.key_id),
                ))
            }
        }
    }

    /// Ends the check against the chain head (`seq` and MAC of the last append), which catches
    /// records deleted from the end.
    #[must_use]
    pub fn finish(self, head: Option<(i64, [u8; 32])>) -> VerifyReport {
        let mut broken = self.broken;
        if broken.is_none()
            && let Some((seq, mac)) = head
            && (seq != self.expected_seq - 1
                || (seq > 0 && !constant_time_eq(&mac, &self.previous)))
        {
            broken = Some((
                None,
                format!(
                    "the chain head is at {seq} but the records end at {}",
                    self.expected_seq - 1
                ),
            ));
        }
        VerifyReport {
            ok: broken.is_none(),
            checked: self.checked,
            first_broken_id: broken.as_ref().and_then(|(id, _)| *id),
            reason: broken.map(|(_, why)| why),
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy MAC for the pure tests (the real one is HMAC-SHA-256 in the crypto adapter).
    struct Toy;
    impl ChainMac for Toy {
        fn current_key_id(&self) -> u32 {
            1
        }
        fn mac(&self, key_id: u32, previous: &[u8; 32], record: &[u8]) -> Option<[u8; 32]> {
            (key_id == 1).then(|| {
                let mut out = *previous;
                for (i, b) in record.iter().enumerate() {
                    let slot = &mut out[i % 32];
                    *slot = slot.rotate_left(3) ^ b;
                }
                out
            })
        }
    }

    fn chain(n: i64) -> Vec<ChainedRecord> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut r = ChainedRecord {
                    seq,
                    id: Uuid::from_u128(seq as u128),
                    company_id: None,
                    at: Timestamp::default() + kernel::Duration::seconds(seq),
                    actor_id: None,
                    action: "session.login".into(),
                    target: None,
                    outcome: "success".into(),
                    ip: Some("203.0.113.1".into()),
                    user_agent: None,
                    request_id: None,
                    details: "{}".into(),
                    key_id: 1,
                    mac: [0; 32],
                };
                r.mac = Toy.mac(1, &prev, &r.canonical_bytes()).unwrap();
                prev = r.mac;
                r
            })
            .collect()
    }

    fn verify(records: &[ChainedRecord], head: Option<(i64, [u8; 32])>) -> VerifyReport {
        let mut v = ChainVerifier::new(Checkpoint::default());
        for r in records {
            v.step(r, &Toy);
        }
        v.finish(head)
    }

    fn head(records: &[ChainedRecord]) -> Option<(i64, [u8; 32])> {
        records.last().map(|r| (r.seq, r.mac))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let report = verify(&c, head(&c));
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 5);
    }

    #[test]
    fn an_edited_field_is_detected_at_that_record() {
        let mut c = chain(5);
        let h = head(&c);
        c[2].outcome = "failure".into();
        let report = verify(&c, h);
        assert!(!report.ok);
        assert_eq!(report.first_broken_id, Some(c[2].id));
    }

    #[test]
    fn a_deleted_record_is_detected_in_the_middle_and_at_the_end() {
        let c = chain(5);
        let mut gap = c.clone();
        gap.remove(1);
        assert_eq!(verify(&gap, head(&c)).first_broken_id, Some(c[2].id));
        let mut tail = c.clone();
        tail.pop();
        let report = verify(&tail, head(&c));
        assert!(
            !report.ok && report.reason.unwrap().contains("head"),
            "deleting the last record is caught by the head"
        );
    }

    #[test]
    fn an_inserted_record_is_detected() {
        let c = chain(4);
        let mut forged = c[1].clone();
        forged.id = Uuid::from_u128(99);
        forged.seq = 3;
        let mut with_insert = c.clone();
        with_insert.insert(2, forged);
        for r in with_insert.iter_mut().skip(3) {
            r.seq += 1;
        }
        let report = verify(&with_insert, head(&c));
        assert!(!report.ok);
        assert_eq!(report.first_broken_id, Some(Uuid::from_u128(99)));
    }

    #[test]
    fn reordering_is_detected() {
        let c = chain(4);
        let mut swapped = c.clone();
        // Swap the contents of records 2 and 3 but keep the sequence numbers in order.
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = ChainedRecord { seq: 2, ..b };
        swapped[2] = ChainedRecord { seq: 3, ..a };
        let report = verify(&swapped, head(&c));
        assert!(!report.ok);
        assert_eq!(report.first_broken_id, Some(c[2].id));
    }

    #[test]
    fn verification_starts_from_a_checkpoint() {
        let c = chain(6);
        let mut v = ChainVerifier::new(Checkpoint {
            seq: 3,
            mac: c[2].mac,
        });
        for r in &c[3..] {
            v.step(r, &Toy);
        }
        assert!(v.finish(head(&c)).ok);
        // The wrong checkpoint MAC breaks the first remaining record.
        let mut v = ChainVerifier::new(Checkpoint {
            seq: 3,
            mac: GENESIS,
        });
        for r in &c[3..] {
            v.step(r, &Toy);
        }
        assert_eq!(v.finish(head(&c)).first_broken_id, Some(c[3].id));
    }

    #[test]
    fn canonical_bytes_differ_for_every_field() {
        let base = chain(1).remove(0);
        let variants = [
            ChainedRecord {
                seq: 2,
                ..base.clone()
            },
            ChainedRecord {
                action: "session.logout".into(),
                ..base.clone()
            },
            ChainedRecord {
                target: Some("x".into()),
                ..base.clone()
            },
            ChainedRecord {
                ip: None,
                ..base.clone()
            },
            ChainedRecord {
                user_agent: Some(String::new()),
                ..base.clone()
            },
            ChainedRecord {
                details: "{\"a\":1}".into(),
                ..base.clone()
            },
            ChainedRecord {
                at: base.at + kernel::Duration::microseconds(1),
                ..base.clone()
            },
            ChainedRecord {
                key_id: 2,
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.canonical_bytes(), base.canonical_bytes(), "{v:?}");
        }
    }
}
