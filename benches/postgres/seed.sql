-- :contacts contacts pop-0 .. pop-(contacts-1) with 5 to 30 events each, as `bench check`
-- seeds consent-ledger: a registration, then grants, withdrawals, bases and confirmations
-- over the four purposes. Set-based for speed: the rows have the chain's shape (prev_hash,
-- hash) but are not chained through append_event; the read workload never looks at them.
INSERT INTO events (contact_id, seq, kind, purpose, body, prev_hash, hash, recorded_at)
SELECT 'pop-' || c,
       s,
       CASE WHEN s = 1 THEN 'contact_registered'
            ELSE (ARRAY['consent_granted', 'consent_withdrawn', 'legal_basis_recorded',
                        'consent_granted', 'double_opt_in_confirmed'])[1 + (c + s) % 5] END,
       CASE WHEN s = 1 THEN NULL
            ELSE (ARRAY['email_marketing', 'email_tracking', 'sales_outreach',
                        'profiling'])[1 + (c * 7 + s) % 4] END,
       consent_body('email_marketing'),
       sha256(convert_to('pop-' || c || '/' || (s - 1), 'UTF8')),
       sha256(convert_to('pop-' || c || '/' || s, 'UTF8')),
       now() - make_interval(days => 31 - s)
FROM generate_series(0, :contacts - 1) AS c,
     LATERAL generate_series(1, 5 + (c * 7919) % 26) AS s;

INSERT INTO contact_heads
SELECT DISTINCT ON (contact_id) contact_id, seq, hash
FROM events ORDER BY contact_id, seq DESC;

VACUUM ANALYZE;
