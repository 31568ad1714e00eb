-- Idempotency keys are scoped to the API client, not the organisation. Existing rows
-- get the client that created their result (device: registered_by; operation:
-- created_by), '' if unknown.
ALTER TABLE idempotency_keys ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
UPDATE idempotency_keys k SET client_id = COALESCE(
    (SELECT d.registered_by FROM devices d WHERE d.id = k.result_id),
    (SELECT o.body::json->>'created_by' FROM operations o WHERE o.id = k.result_id),
    '');
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (client_id, idem_key);
ALTER TABLE idempotency_keys ALTER COLUMN client_id DROP DEFAULT;
