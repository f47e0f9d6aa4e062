-- One durable append (its own transaction) to one of :contacts contacts of this run.
\set c random(0, :contacts - 1)
\set grant random(0, 1)
SELECT append_event('w-' || :c, CASE WHEN :grant = 1 THEN 'consent_granted' ELSE 'consent_withdrawn' END, 'email_marketing', consent_body('email_marketing'));
