//! Device registration (signer clients) and device reads.

use serde::Serialize;

use super::{forbidden, request_hash, Service};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// `registerDevice` input.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterDevice {
    /// Name.
    pub name: String,
    /// `virtual` | `manual`.
    pub kind: String,
    /// Hex Ed25519 public key.
    pub identity_signing_key: String,
    /// Hex X25519 public key.
    pub identity_encryption_key: String,
}

impl Service {
    /// Registers a device (signer clients).
    pub async fn register_device(
        &self,
        p: &Principal,
        input: RegisterDevice,
        key: Option<&str>,
    ) -> Result<Device> {
        if p.role != Role::Signer {
            return Err(forbidden("only a signer API client can register devices"));
        }
        let hash = request_hash("registerDevice", &input)?;
        if let Some(id) = self.idempotent_existing(p, key, "registerDevice", &hash).await? {
            return self.device(p, &id).await;
        }
        let now = self.clock.now();
        let device = new_device(
            &p.org_id,
            &p.client_id,
            &input.name,
            &input.kind,
            &input.identity_signing_key,
            &input.identity_encryption_key,
            now,
        )?;
        let mut tx = self.store.begin().await?;
        if let Err(e) = self.store.insert_device(&mut tx, &device).await {
            tx.rollback().await?;
            // A racing request with the same idempotency key registered these keys.
            if e.code() == ErrorCode::DuplicateKey {
                if let Some(id) = self.idempotent_existing(p, key, "registerDevice", &hash).await? {
                    return self.device(p, &id).await;
                }
            }
            return Err(e);
        }
        if !self
            .idempotent_record(&mut tx, p, key, "registerDevice", &hash, device.id.as_str())
            .await?
        {
            tx.rollback().await?;
            let id = self.idempotent_lost_race(p, key, "registerDevice", &hash).await?;
            return self.device(p, &id).await;
        }
        let ev = AuditEvent {
            event: "registered".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"name": device.name, "kind": device.kind.as_str()}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "device", device.id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        Ok(device)
    }

    /// A device of the caller's organisation.
    pub async fn device(&self, p: &Principal, id: &str) -> Result<Device> {
        self.store
            .device_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("device", id))
    }

    /// The caller's organisation's devices with these ids, by id; an unknown id is an error.
    pub async fn devices_by_ids(
        &self,
        p: &Principal,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Device>> {
        let found: std::collections::HashMap<String, Device> = self
            .store
            .devices_by_ids(&p.org_id, ids)
            .await?
            .into_iter()
            .map(|d| (d.id.to_string(), d))
            .collect();
        match ids.iter().find(|id| !found.contains_key(**id)) {
            Some(missing) => Err(Error::not_found("device", missing)),
            None => Ok(found),
        }
    }

    /// All devices of the caller's organisation.
    pub async fn devices(&self, p: &Principal) -> Result<Vec<Device>> {
        self.store.devices(&p.org_id).await
    }
}

impl Service {
    /// Stores a device's own signed record of its keys (the signer client that registered
    /// it): verified here, and verified again by every device that uses it.
    pub async fn publish_device_record(
        &self,
        p: &Principal,
        device_id: &str,
        record_hex: &str,
    ) -> Result<Device> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut device = self.acting_device(&mut tx, p, device_id).await?;
        let before = device.record.clone();
        if !device.publish_record(record_hex)? {
            tx.rollback().await?;
            return Ok(device);
        }
        self.store
            .update_device_record(&mut tx, &device, before.as_ref())
            .await?;
        if let Some(r) = &device.record {
            let ev = AuditEvent {
                event: "record_published".to_owned(),
                actor: Some(device.id.to_string()),
                detail: serde_json::json!({"revision": r.record.revision, "record": r.to_hex(),
                    "recordHash": hex::encode(r.hash())}),
            };
            self.store
                .audit(&mut tx, &p.org_id, "device", device.id.as_str(), now, &[ev])
                .await?;
        }
        tx.commit().await?;
        Ok(device)
    }
}
