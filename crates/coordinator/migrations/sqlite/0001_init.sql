-- vsigner coordinator schema (SQLite). Keep in step with migrations/postgres.
CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_clients (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES api_clients(id),
    org_id TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    registered_by TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    identity_signing_key TEXT NOT NULL,
    identity_encryption_key TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX devices_org ON devices(org_id);
CREATE TABLE vaults (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX vaults_org ON vaults(org_id);
CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    vault_id TEXT NOT NULL REFERENCES vaults(id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX operations_org_state ON operations(org_id, state);
CREATE INDEX operations_state_expiry ON operations(state, expires_at);
-- One vote per device per operation; one vote per position.
CREATE TABLE votes (
    operation_id TEXT NOT NULL REFERENCES operations(id),
    device_id TEXT NOT NULL,
    choice TEXT NOT NULL,
    weight BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (operation_id, device_id),
    UNIQUE (operation_id, seq)
);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_entity ON audit_log(entity_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TABLE idempotency_keys (
    org_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    mutation TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    result_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, idem_key)
);
