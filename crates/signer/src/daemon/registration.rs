//! Creating a device (identity keys, stored before anything else, so a crash cannot lose
//! them) and registering it with the coordinator (idempotent, retried), then starting it.

use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use vsigner_approval::{AnyApprover, DeviceKey};
use vsigner_records::DeviceRecord;
use vsigner_transport::{DeviceId, DeviceIdentity, Link};

use super::{Daemon, DeviceRuntime};
use crate::api::{RegisteredDevice, RegistrationError};
use crate::devices::{self, StoredDevice};
use crate::metrics;
use crate::peers;

impl Daemon {
    /// Creates, stores and registers a device, then starts its loop.
    pub async fn create_device(&self, name: &str) -> Result<RegisteredDevice, RegistrationError> {
        crate::config::check_device_name(name).map_err(RegistrationError::Internal)?;
        let _one_at_a_time = self.inner.creating.lock().await;
        if self.inner.devices.read().await.values().any(|d| d.name == name) {
            return Err(RegistrationError::AlreadyExists(name.to_owned()));
        }
        if self.inner.devices.read().await.len() >= crate::config::MAX_INITIAL_DEVICES {
            return Err(RegistrationError::LimitReached(format!(
                "at most {} devices per instance",
                crate::config::MAX_INITIAL_DEVICES
            )));
        }
        #[allow(clippy::expect_used)] // a constant valid id, replaced below
        let placeholder = DeviceId::new("new").expect("valid device id");
        let identity = DeviceIdentity::generate(placeholder, &mut OsRng);
        let (pending, _) = devices::pending_id(&identity);
        let device = StoredDevice {
            name: name.to_owned(),
            identity: identity.with_device_id(pending),
        };
        devices::store(&self.inner.keystore, &device)
            .await
            .map_err(|e| RegistrationError::Unavailable(format!("keystore: {e}")))?;
        let id = self
            .finish_registration(device)
            .await
            .map_err(RegistrationError::Unavailable)?;
        Ok(RegisteredDevice {
            id,
            name: name.to_owned(),
        })
    }

    /// Registers a stored (pending) device with the coordinator, stores it under the id it
    /// got and starts it; returns that id.
    pub(super) async fn finish_registration(&self, device: StoredDevice) -> Result<String, String> {
        let (pending, idempotency_key) = devices::pending_id(&device.identity);
        let keys = device.identity.public_keys().clone();
        // Network trouble or an overloaded coordinator: retry a few times (the idempotency
        // key makes retries safe); then the device stays pending until the next start.
        let mut pause = Duration::from_millis(500);
        let registered = loop {
            match self
                .inner
                .coordinator
                .register_device(
                    &device.name,
                    &keys.signing_hex(),
                    &keys.encryption_hex(),
                    &idempotency_key,
                )
                .await
            {
                Ok(d) => break d,
                Err(e) if e.is_transient() && pause < Duration::from_secs(16) => {
                    tracing::warn!(name = %device.name, error = %e, "registration not accepted yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    return Err(format!(
                    "registration with the coordinator failed (kept as pending, retried at next start): {e}"
                ))
                }
            }
        };
        if registered.identity_signing_key != keys.signing_hex()
            || registered.identity_encryption_key != keys.encryption_hex()
            || registered.organisation_id != self.inner.config.org_id
        {
            return Err(format!(
                "the coordinator answered the registration with device {} of other keys or another organisation",
                registered.id
            ));
        }
        let id = DeviceId::new(registered.id.clone()).map_err(|e| format!("coordinator device id: {e}"))?;
        let device = StoredDevice {
            name: device.name,
            identity: device.identity.with_device_id(id),
        };
        let exists = self
            .inner
            .keystore
            .get(&vsigner_keystore::RecordId::identity(&registered.id).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        if !exists {
            devices::store(&self.inner.keystore, &device)
                .await
                .map_err(|e| format!("keystore: {e}"))?;
        }
        devices::forget_pending(&self.inner.keystore, &pending)
            .await
            .map_err(|e| format!("keystore: {e}"))?;
        tracing::info!(device = %registered.id, name = %device.name, "device registered with the coordinator");
        self.launch(device).await
    }

    /// Connects a registered device and starts its loop.
    pub(super) async fn launch(&self, device: StoredDevice) -> Result<String, String> {
        let identity = Arc::new(device.identity);
        let id = identity.device_id().as_str().to_owned();
        let desk = std::sync::Arc::new(super::human_desk::CoordinatorDesk {
            inner: std::sync::Arc::downgrade(&self.inner),
            device: id.clone(),
        });
        let approver = AnyApprover::with_desk(
            &self.inner.config.approval,
            DeviceKey::new(id.clone(), identity.signing_key().clone()),
            Some(desk),
        )
        .map_err(|e| format!("approver: {e}"))?;
        match approver.check_backend().await {
            Ok(()) => {}
            // A node that is down may come back: each decision checks again.
            Err(vsigner_approval::contract::BackendProblem::Unreachable(why)) => {
                tracing::warn!(device = %id, reason = %why, "the approval node cannot be checked now; every decision checks it")
            }
            Err(vsigner_approval::contract::BackendProblem::Refused(why)) => {
                return Err(format!("approver: {why}"))
            }
        }
        self.publish_record(&identity).await?;
        let link = Link::connect(identity.clone(), self.inner.config.mqtt_config())
            .await
            .map_err(|e| format!("MQTT: {e}"))?;
        // Early envelopes are checked against the peers this device already trusts.
        link.learn_peers(peers::pinned(&self.inner.keystore, &id).await);
        let notifications = link.take_notifications();
        let runtime = Arc::new(DeviceRuntime {
            id: id.clone(),
            name: device.name,
            identity,
            link: Arc::new(link),
            approver,
            wake: tokio::sync::Notify::new(),
            idle: tokio::sync::Notify::new(),
        });
        let count = {
            let mut devices = self.inner.devices.write().await;
            devices.insert(id.clone(), runtime.clone());
            devices.len()
        };
        metrics::devices(count);
        tracing::info!(device = %id, name = %runtime.name, "device started");
        let daemon = self.clone();
        self.inner
            .tasks
            .spawn(async move { daemon.device_loop(runtime, notifications).await });
        Ok(id)
    }

    /// Makes sure the coordinator serves this device's own signed record of its keys
    /// (revision 1: keys are not rotated), publishing it when it is missing or another.
    async fn publish_record(&self, identity: &DeviceIdentity) -> Result<(), String> {
        let keys = identity.public_keys();
        let key = |hex_key: String| -> Result<[u8; 32], String> {
            hex::decode(hex_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| "identity key is not 32 bytes".to_owned())
        };
        let record = DeviceRecord {
            organisation_id: self.inner.config.org_id.clone(),
            device_id: identity.device_id().as_str().to_owned(),
            signing_key: key(keys.signing_hex())?,
            encryption_key: key(keys.encryption_hex())?,
            revision: 1,
        }
        .sign(identity.signing_key())
        .to_hex();
        let id = identity.device_id().as_str();
        let mut pause = Duration::from_millis(500);
        loop {
            let published = match self.inner.coordinator.devices().await {
                Ok(all) => all.into_iter().find(|d| d.id == id).and_then(|d| d.record),
                Err(e) => Err(e).map_err(|e| format!("cannot read this device at the coordinator: {e}"))?,
            };
            if published.as_deref() == Some(record.as_str()) {
                return Ok(());
            }
            match self.inner.coordinator.publish_device_record(id, &record).await {
                Ok(_) => {
                    tracing::info!(device = %id, "signed record of the device's keys published");
                    return Ok(());
                }
                Err(e) if e.is_transient() && pause < Duration::from_secs(16) => {
                    tracing::warn!(device = %id, error = %e, "record not published yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(format!("cannot publish the device's signed record: {e}")),
            }
        }
    }
}
