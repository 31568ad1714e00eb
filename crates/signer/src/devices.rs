//! The virtual devices of this instance, as stored in the keystore.
//!
//! A device record holds the device's name and its secret identity (Ed25519 + X25519, see
//! `vsigner_transport::DeviceIdentity`): `"VSDV" ‖ version ‖ u16 name length ‖ name ‖
//! identity bytes`, encrypted like every keystore record. Names are checked by
//! [`crate::config::check_device_name`].
//!
//! Creating a device must survive a crash at any point without losing an identity the
//! coordinator knows, or registering two. So:
//! 1. a fresh identity is stored under a provisional id `pending-<hash of its public key>`;
//! 2. it is registered with the coordinator with an idempotency key derived from the same
//!    public key (a retry after a crash gets the same device back);
//! 3. it is stored under the id the coordinator assigned, then the provisional record is
//!    deleted.
//!
//! At start every pending record goes through steps 2–3 again.

use sha2::{Digest, Sha256};
use vsigner_keystore::{Keystore, KeystoreError, RecordId, RecordKind};
use vsigner_transport::{DeviceId, DeviceIdentity};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"VSDV";
const VERSION: u8 = 1;
/// Provisional ids of devices not yet registered start with this.
pub const PENDING_PREFIX: &str = "pending-";

/// A device as stored: its name and identity.
pub struct StoredDevice {
    /// The name given at creation (`InitialDevices`, `/register-vs-device`).
    pub name: String,
    /// The identity; its device id is the coordinator's id, or a `pending-` id.
    pub identity: DeviceIdentity,
}

impl std::fmt::Debug for StoredDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDevice")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

impl StoredDevice {
    /// Whether the coordinator has not yet confirmed its registration.
    pub fn is_pending(&self) -> bool {
        self.identity.device_id().as_str().starts_with(PENDING_PREFIX)
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let identity = self.identity.to_bytes();
        let mut out = Zeroizing::new(Vec::with_capacity(7 + self.name.len() + identity.len()));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        // Names are at most 64 characters (256 bytes of UTF-8): u16 always holds the length.
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&identity);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("not a device record")?;
        let (version, rest) = rest.split_first().ok_or("truncated")?;
        if *version != VERSION {
            return Err(format!("unknown device record version {version}"));
        }
        let (len, rest) = rest.split_at_checked(2).ok_or("truncated")?;
        let len = u16::from_be_bytes([len[0], len[1]]);
        let (name, identity) = rest.split_at_checked(usize::from(len)).ok_or("truncated")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| "name is not UTF-8")?
            .to_owned();
        let identity = DeviceIdentity::from_bytes(identity).map_err(|e| e.to_string())?;
        Ok(StoredDevice { name, identity })
    }
}

/// The provisional id of a new identity, and the idempotency key of its registration.
pub fn pending_id(identity: &DeviceIdentity) -> (DeviceId, String) {
    let digest = Sha256::digest(identity.public_keys().signing_hex().as_bytes());
    let short = hex::encode(&digest[..12]);
    #[allow(clippy::expect_used)] // "pending-" + 24 hex digits is a valid device id
    let id = DeviceId::new(format!("{PENDING_PREFIX}{short}")).expect("valid device id");
    (id, format!("vsigner-device-{}", hex::encode(digest)))
}

/// Every stored device (registered and pending), sorted by name.
pub async fn load_all(keystore: &Keystore) -> Result<Vec<StoredDevice>, KeystoreError> {
    let mut out = Vec::new();
    for record in keystore.list().await? {
        if record.id.kind() != RecordKind::DeviceIdentity {
            continue;
        }
        let Some(bytes) = keystore.get(&record.id).await? else {
            continue;
        };
        let device = StoredDevice::from_bytes(&bytes)
            .map_err(|reason| KeystoreError::Lifecycle(format!("device record {}: {reason}", record.id)))?;
        out.push(device);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Stores a device under its identity's device id.
pub async fn store(keystore: &Keystore, device: &StoredDevice) -> Result<(), KeystoreError> {
    let id = RecordId::identity(device.identity.device_id().as_str())?;
    keystore.put(&id, &device.to_bytes()).await
}

/// Deletes the provisional record once the registered one is stored.
pub async fn forget_pending(keystore: &Keystore, pending: &DeviceId) -> Result<(), KeystoreError> {
    keystore.delete(&RecordId::identity(pending.as_str())?).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip() {
        let identity = DeviceIdentity::generate(DeviceId::new("x").unwrap(), &mut rand_core::OsRng);
        let (pending, key) = pending_id(&identity);
        assert!(pending.as_str().starts_with(PENDING_PREFIX));
        assert!(key.starts_with("vsigner-device-"));
        let device = StoredDevice {
            name: "signer one".into(),
            identity: identity.with_device_id(pending),
        };
        assert!(device.is_pending());
        let back = StoredDevice::from_bytes(&device.to_bytes()).unwrap();
        assert_eq!(back.name, "signer one");
        assert_eq!(back.identity.public_keys(), device.identity.public_keys());
        let bytes = device.to_bytes();
        for cut in 0..bytes.len() {
            assert!(StoredDevice::from_bytes(&bytes[..cut]).is_err());
        }
        assert!(!format!("{device:?}").contains(&hex::encode(device.identity.signing_key().as_bytes())));
    }

    #[test]
    fn the_longest_names_fit() {
        // 64 four-byte characters: 256 bytes, more than a one-byte length could say.
        let name = "𝄞".repeat(64);
        crate::config::check_device_name(&name).unwrap();
        let identity = DeviceIdentity::generate(DeviceId::new("x").unwrap(), &mut rand_core::OsRng);
        let device = StoredDevice {
            name: name.clone(),
            identity,
        };
        assert_eq!(StoredDevice::from_bytes(&device.to_bytes()).unwrap().name, name);
    }
}
