use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SES-1, SES-2 on PostgreSQL: a login's session write in one round trip instead of five. The
/// function does what `SessionStore::create_capped` does statement by statement on SQLite, in the
/// same order and inside the caller's transaction:
///
/// 1. takes the user's row lock (`session_seq + 1`, which is also the new session's number);
/// 2. reads the user's active sessions **in a new snapshot** (PL/pgSQL takes one per statement
///    under READ COMMITTED, so it sees every session that a concurrent login committed before
///    it released the lock: the reason this cannot be one plain SQL statement);
/// 3. revokes all but the newest `p_keep` of them, inserts the new session;
/// 4. bumps the audit chain head by one record per revoked session plus `p_more_records`.
///
/// It returns one row per revoked session, oldest first, or one row with `revoked` NULL when none
/// was; every row carries the session number and the head after the bump. The caller chains the
/// audit records onto that head and inserts them before it commits.
const CREATE: &str = r"
CREATE FUNCTION session_open_capped(
    p_id uuid, p_company uuid, p_user uuid, p_token_hash text,
    p_created_at timestamptz, p_expires_at timestamptz, p_ip text, p_user_agent text,
    p_enrolment_only boolean, p_keep bigint, p_idle_since timestamptz,
    p_revoked_at timestamptz, p_revoked_reason text, p_chain text, p_more_records bigint,
    p_genesis text)
RETURNS TABLE (session_seq bigint, head_seq bigint, head_mac text, revoked uuid)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq bigint;
    v_revoked uuid[];
    v_count bigint;
    v_head_seq bigint;
    v_head_mac text;
BEGIN
    UPDATE users SET session_seq = users.session_seq + 1
     WHERE users.id = p_user AND users.company_id = p_company
    RETURNING users.session_seq INTO v_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session owner vanished' USING ERRCODE = 'no_data_found';
    END IF;

    SELECT coalesce(array_agg(live.id ORDER BY live.seq), '{}') INTO v_revoked
      FROM (SELECT s.id, s.seq FROM sessions s
             WHERE s.user_id = p_user AND s.revoked_at IS NULL
               AND s.expires_at > p_created_at AND s.last_seen_at > p_idle_since
             ORDER BY s.seq DESC OFFSET p_keep) AS live;

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

    v_count := cardinality(v_revoked) + p_more_records;
    UPDATE audit_chain_heads SET seq = audit_chain_heads.seq + v_count
     WHERE audit_chain_heads.chain = p_chain
    RETURNING audit_chain_heads.seq, audit_chain_heads.mac INTO v_head_seq, v_head_mac;
    IF NOT FOUND THEN
        INSERT INTO audit_chain_heads (chain, seq, mac) VALUES (p_chain, 0, p_genesis)
        ON CONFLICT (chain) DO NOTHING;
        UPDATE audit_chain_heads SET seq = audit_chain_heads.seq + v_count
         WHERE audit_chain_heads.chain = p_chain
        RETURNING audit_chain_heads.seq, audit_chain_heads.mac INTO v_head_seq, v_head_mac;
    END IF;

    IF cardinality(v_revoked) = 0 THEN
        RETURN QUERY SELECT v_seq, v_head_seq, v_head_mac, NULL::uuid;
    ELSE
        RETURN QUERY SELECT v_seq, v_head_seq, v_head_mac, r.id
          FROM unnest(v_revoked) WITH ORDINALITY AS r(id, n) ORDER BY r.n;
    END IF;
END $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite keeps the statement-by-statement path: its round trips are function calls.
        super::on_postgres(manager, &[CREATE]).await
    }
}
