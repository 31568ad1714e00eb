-- Idempotency keys are scoped to the API client, not the organisation. Existing rows
-- get the client that created their result (device: registered_by; operation:
-- created_by), '' if unknown.
CREATE TABLE idempotency_keys_v2 (
    client_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    mutation TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    result_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, idem_key)
);
INSERT INTO idempotency_keys_v2 (client_id, org_id, idem_key, mutation, request_hash, result_id, created_at)
SELECT COALESCE(
           (SELECT d.registered_by FROM devices d WHERE d.id = k.result_id),
           (SELECT json_extract(o.body, '$.created_by') FROM operations o WHERE o.id = k.result_id),
           ''),
       k.org_id, k.idem_key, k.mutation, k.request_hash, k.result_id, k.created_at
FROM idempotency_keys k;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_v2 RENAME TO idempotency_keys;
