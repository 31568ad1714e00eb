-- API clients whose secret can rotate (the previous secret stays valid until
-- previous_valid_until, in ms) and be revoked (revoked_at, in ms; its tokens are deleted).
ALTER TABLE api_clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE api_clients ADD COLUMN previous_valid_until BIGINT;
ALTER TABLE api_clients ADD COLUMN rotated_at BIGINT;
ALTER TABLE api_clients ADD COLUMN revoked_at BIGINT;
