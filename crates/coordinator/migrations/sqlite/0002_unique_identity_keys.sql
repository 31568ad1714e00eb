-- A device identity key (Ed25519 signing, X25519 encryption) belongs to one device.
CREATE UNIQUE INDEX devices_identity_signing_key ON devices(identity_signing_key);
CREATE UNIQUE INDEX devices_identity_encryption_key ON devices(identity_encryption_key);
