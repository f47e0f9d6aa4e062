-- :batch appends in one transaction, to contacts drawn at random and locked in id order
-- (so concurrent batches cannot deadlock).
SELECT count(append_event('b-' || c, 'consent_granted', 'email_marketing', consent_body('email_marketing')))
FROM (SELECT (random() * (:contacts - 1))::int AS c FROM generate_series(1, :batch) ORDER BY 1) AS picked;
