-- Human approvals (ApprovalMode = Human): the request a human-approved device shows to
-- people (the exact bytes their passkeys sign, with the verdict) and the answers they give,
-- the latest of each passkey.
-- The coordinator only keeps them: each device checks the answers against its own passkeys.
CREATE TABLE human_approval_requests (
    operation_id TEXT NOT NULL REFERENCES operations(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    org_id TEXT NOT NULL,
    request TEXT NOT NULL,
    -- JSON array of the passkeys' credential ids (base64url) whose answers the device
    -- reads: answers by any other passkey are not taken.
    credential_ids TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    PRIMARY KEY (operation_id, device_id)
);
CREATE TABLE human_answers (
    operation_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    org_id TEXT NOT NULL,
    verdict TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    assertion TEXT NOT NULL,
    answered_by TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (operation_id, device_id, seq),
    FOREIGN KEY (operation_id, device_id) REFERENCES human_approval_requests (operation_id, device_id)
);
