-- The web console's people: users with a role (viewer, operator, approver, admin) and
-- their sign-in sessions (the cookie's token is stored as SHA-256; the CSRF token is derived
-- from it, so it is not stored).
CREATE TABLE console_users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (org_id, name)
);
-- Passkeys people registered in the console: the entry of a device's passkeys file
-- (webauthn-rs's serialised Passkey: credential id and public key, no secret).
CREATE TABLE console_passkeys (
    credential_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES console_users(id),
    org_id TEXT NOT NULL,
    passkey TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES console_users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
