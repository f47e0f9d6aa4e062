-- The latest email-marketing grant or withdrawal of one seeded contact (indexed point read).
\set c random(0, :contacts - 1)
SELECT kind, seq, recorded_at FROM events
WHERE contact_id = 'pop-' || :c AND purpose = 'email_marketing'
  AND kind IN ('consent_granted', 'consent_withdrawn')
ORDER BY seq DESC LIMIT 1;
