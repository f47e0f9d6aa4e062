-- The PostgreSQL baseline: the consent ledger a team would build without consent-ledger.
-- One table of events with a per-contact hash chain computed in the appending transaction
-- (the contact's head read FOR UPDATE, the event inserted with sha256(prev || body), the
-- head updated), and an index for the latest consent per contact and purpose.
CREATE TABLE contact_heads (
    contact_id text PRIMARY KEY,
    seq        bigint NOT NULL,
    head       bytea  NOT NULL
);

CREATE TABLE events (
    global_seq  bigserial,
    contact_id  text        NOT NULL,
    seq         bigint      NOT NULL,
    kind        text        NOT NULL,
    purpose     text,
    body        jsonb       NOT NULL,
    prev_hash   bytea       NOT NULL,
    hash        bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, seq)
);

-- "May we email this contact?" as a point read: the latest grant or withdrawal.
CREATE INDEX events_latest_consent ON events (contact_id, purpose, seq DESC)
    WHERE kind IN ('consent_granted', 'consent_withdrawn');

-- Appends one event to a contact's chain; returns its position in the chain.
CREATE FUNCTION append_event(p_contact text, p_kind text, p_purpose text, p_body jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    prev_seq  bigint;
    prev_head bytea;
    new_hash  bytea;
BEGIN
    SELECT seq, head INTO prev_seq, prev_head
        FROM contact_heads WHERE contact_id = p_contact FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO contact_heads VALUES (p_contact, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
            ON CONFLICT DO NOTHING;
        SELECT seq, head INTO prev_seq, prev_head
            FROM contact_heads WHERE contact_id = p_contact FOR UPDATE;
    END IF;
    new_hash := sha256(prev_head || convert_to(p_body::text, 'UTF8'));
    INSERT INTO events (contact_id, seq, kind, purpose, body, prev_hash, hash)
        VALUES (p_contact, prev_seq + 1, p_kind, p_purpose, p_body, prev_head, new_hash);
    UPDATE contact_heads SET seq = prev_seq + 1, head = new_hash WHERE contact_id = p_contact;
    RETURN prev_seq + 1;
END $$;

-- A body of the size and shape of a consent event.
CREATE FUNCTION consent_body(p_purpose text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'purpose', p_purpose, 'channel', 'email', 'method', 'checkbox',
        'notice', jsonb_build_object('id', 'bench-notice', 'version', '1'),
        'occurred_at', '2026-11-01T10:00:00Z', 'actor', 'bench')
$$;
