use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SES-1, SES-2, AUD-2, AUD-4 on PostgreSQL: a login's session write **and** its audit records in
/// one statement, outside any explicit transaction. A compare-and-set on the user's live sessions
/// and the company chain's head:
///
/// - With `p_records` NULL it is a peek: it returns the sessions a login would revoke now and the
///   chain's head, takes no lock and writes nothing. The caller chains the records (the
///   revocations', oldest first, then its own) onto that head with a key the database never sees.
/// - With `p_records` it takes the user's row lock, reads the live sessions in a new snapshot
///   (PL/pgSQL takes one per statement under READ COMMITTED, so it sees every login committed
///   before it got the lock), locks the chain head, and compares both with what the caller
///   expected. On any difference it writes nothing and returns what it found, for the caller to
///   chain again. Otherwise it bumps the session number, revokes, inserts the session, moves the
///   head and inserts the records (whose sequence numbers must continue the head exactly; the
///   m0010 trigger sets the head's MAC from the last one). The statement commits alone.
///
/// Same lock order as every other write (user row, then chain head), and no lock outlives the
/// statement: m0011's function held them across the caller's round trips until its `COMMIT`.
const CREATE: &str = r"
CREATE FUNCTION session_open_chained(
    p_id uuid, p_company uuid, p_user uuid, p_token_hash text,
    p_created_at timestamptz, p_expires_at timestamptz, p_ip text, p_user_agent text,
    p_enrolment_only boolean, p_keep bigint, p_idle_since timestamptz,
    p_revoked_at timestamptz, p_revoked_reason text, p_chain text, p_genesis text,
    p_expect_seq bigint, p_expect_mac text, p_expect_revoked uuid[], p_records jsonb)
RETURNS TABLE (opened boolean, session_seq bigint, head_seq bigint, head_mac text,
               revoked uuid[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq bigint;
    v_revoked uuid[];
    v_head_seq bigint;
    v_head_mac text;
    v_count bigint;
    v_misplaced bigint;
BEGIN
    IF p_records IS NOT NULL THEN
        PERFORM 1 FROM users
         WHERE users.id = p_user AND users.company_id = p_company FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session owner vanished' USING ERRCODE = 'no_data_found';
        END IF;
    END IF;

    SELECT coalesce(array_agg(live.id ORDER BY live.seq), '{}') INTO v_revoked
      FROM (SELECT s.id, s.seq FROM sessions s
             WHERE s.user_id = p_user AND s.company_id = p_company AND s.revoked_at IS NULL
               AND s.expires_at > p_created_at AND s.last_seen_at > p_idle_since
             ORDER BY s.seq DESC OFFSET p_keep) AS live;

    IF p_records IS NULL THEN
        SELECT h.seq, h.mac INTO v_head_seq, v_head_mac
          FROM audit_chain_heads h WHERE h.chain = p_chain;
    ELSE
        SELECT h.seq, h.mac INTO v_head_seq, v_head_mac
          FROM audit_chain_heads h WHERE h.chain = p_chain FOR UPDATE;
        IF NOT FOUND AND p_expect_seq = 0 THEN
            INSERT INTO audit_chain_heads (chain, seq, mac) VALUES (p_chain, 0, p_genesis)
            ON CONFLICT (chain) DO NOTHING;
            SELECT h.seq, h.mac INTO v_head_seq, v_head_mac
              FROM audit_chain_heads h WHERE h.chain = p_chain FOR UPDATE;
        END IF;
    END IF;
    IF v_head_seq IS NULL THEN
        v_head_seq := 0;
        v_head_mac := p_genesis;
    END IF;

    IF p_records IS NULL OR v_head_seq IS DISTINCT FROM p_expect_seq
       OR v_head_mac IS DISTINCT FROM p_expect_mac
       OR v_revoked IS DISTINCT FROM p_expect_revoked THEN
        RETURN QUERY SELECT false, NULL::bigint, v_head_seq, v_head_mac, v_revoked;
        RETURN;
    END IF;

    v_count := jsonb_array_length(p_records);
    SELECT count(*) INTO v_misplaced
      FROM jsonb_array_elements(p_records) WITH ORDINALITY AS e(rec, n)
     WHERE (e.rec->>'seq')::bigint IS DISTINCT FROM v_head_seq + e.n
        OR e.rec->>'chain' IS DISTINCT FROM p_chain;
    IF v_count < cardinality(v_revoked) + 1 OR v_misplaced > 0 THEN
        RAISE EXCEPTION 'audit records do not continue their chain' USING ERRCODE = 'data_exception';
    END IF;

    UPDATE users SET session_seq = users.session_seq + 1
     WHERE users.id = p_user AND users.company_id = p_company
    RETURNING users.session_seq INTO v_seq;

    IF cardinality(v_revoked) > 0 THEN
        UPDATE sessions SET revoked_at = p_revoked_at, revoked_reason = p_revoked_reason
         WHERE sessions.company_id = p_company AND sessions.user_id = p_user
           AND sessions.id = ANY (v_revoked) AND sessions.revoked_at IS NULL;
    END IF;

    INSERT INTO sessions (id, company_id, user_id, seq, token_hash, created_at, last_seen_at,
                          expires_at, ip, user_agent, revoked_at, revoked_reason,
                          reauthenticated_at, mfa_enrolment_only)
    VALUES (p_id, p_company, p_user, v_seq, p_token_hash, p_created_at, p_created_at,
            p_expires_at, p_ip, p_user_agent, NULL, NULL, NULL, p_enrolment_only);

    UPDATE audit_chain_heads SET seq = v_head_seq + v_count WHERE audit_chain_heads.chain = p_chain;
    INSERT INTO audit_events (id, company_id, at, actor_id, action, target, outcome, ip,
                              user_agent, request_id, details, chain, seq, key_id, mac)
    SELECT r.id, r.company_id, r.at, r.actor_id, r.action, r.target, r.outcome, r.ip,
           r.user_agent, r.request_id, r.details, r.chain, r.seq, r.key_id, r.mac
      FROM jsonb_to_recordset(p_records) AS r(id uuid, company_id uuid, at timestamptz,
           actor_id uuid, action text, target text, outcome text, ip text, user_agent text,
           request_id text, details text, chain text, seq bigint, key_id bigint, mac text)
     ORDER BY r.seq;

    RETURN QUERY SELECT true, v_seq, h.seq, h.mac, v_revoked
      FROM audit_chain_heads h WHERE h.chain = p_chain;
END $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite keeps the statement-by-statement path: its round trips are function calls.
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager.get_connection().execute_unprepared(CREATE).await?;
        }
        Ok(())
    }
}
