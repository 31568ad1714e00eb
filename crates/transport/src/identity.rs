//! Device identities: the long-term keys that authenticate a device's messages and receive
//! its encrypted point-to-point messages.
//!
//! A device has an Ed25519 signing key (every envelope it sends is signed with it; approvers
//! can also authenticate its HTTP requests with it) and an X25519 key (HPKE recipient key for
//! point-to-point envelopes). The public halves are what the coordinator registers; the
//! secret halves live only in the keystore (see [`DeviceIdentity::to_bytes`]) and in memory,
//! and are zeroized when dropped.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _, Serializable};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::TransportError;

/// The HPKE KEM of device encryption keys.
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;

/// Longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// A device id as the coordinator assigns it. Restricted to `[A-Za-z0-9._:-]`, 1 to 64 bytes,
/// so that it can appear in MQTT topic names (no `/`, `+`, `#`) and log lines as is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Checks and wraps a device id.
    pub fn new(id: impl Into<String>) -> Result<Self, TransportError> {
        let id = id.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if id.is_empty() || id.len() > MAX_DEVICE_ID_LEN || !id.chars().all(ok_char) {
            let shown: String = id.chars().take(MAX_DEVICE_ID_LEN).collect();
            return Err(TransportError::InvalidDeviceId(format!(
                "{shown:?}: expected 1 to {MAX_DEVICE_ID_LEN} characters from [A-Za-z0-9._:-]"
            )));
        }
        Ok(DeviceId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = TransportError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DeviceId::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// The public half of a device identity: what the coordinator registers and what peers use
/// to verify and encrypt.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePublicKeys {
    /// Verifies the device's envelope and request signatures.
    pub signing: VerifyingKey,
    /// HPKE (X25519) key that point-to-point envelopes are encrypted to.
    pub encryption: [u8; 32],
}

impl DevicePublicKeys {
    /// Parses the hex forms the coordinator stores (32-byte Ed25519 and X25519 public keys).
    pub fn from_hex(signing: &str, encryption: &str) -> Result<Self, TransportError> {
        let signing = decode_32("device signing key", signing)?;
        let signing = VerifyingKey::from_bytes(&signing).map_err(|_| TransportError::InvalidKey {
            what: "device signing key",
            reason: "not an Ed25519 public key".into(),
        })?;
        if signing.is_weak() {
            return Err(TransportError::InvalidKey {
                what: "device signing key",
                reason: "a small-order Ed25519 point".into(),
            });
        }
        let encryption = decode_32("device encryption key", encryption)?;
        // A clamped scalar is a multiple of the cofactor: it maps exactly the low-order
        // points to zero, with which no shared secret can be agreed.
        if x25519_dalek::x25519([0x42; 32], encryption) == [0; 32] {
            return Err(TransportError::InvalidKey {
                what: "device encryption key",
                reason: "a low-order X25519 point".into(),
            });
        }
        <Kem as hpke::Kem>::PublicKey::from_bytes(&encryption).map_err(|_| TransportError::InvalidKey {
            what: "device encryption key",
            reason: "not an X25519 public key".into(),
        })?;
        Ok(DevicePublicKeys { signing, encryption })
    }

    /// Hex of the Ed25519 verifying key.
    pub fn signing_hex(&self) -> String {
        hex::encode(self.signing.as_bytes())
    }

    /// Hex of the X25519 encryption key.
    pub fn encryption_hex(&self) -> String {
        hex::encode(self.encryption)
    }

    pub(crate) fn hpke_key(&self) -> Result<<Kem as hpke::Kem>::PublicKey, TransportError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.encryption).map_err(|_| TransportError::InvalidKey {
            what: "device encryption key",
            reason: "not an X25519 public key".into(),
        })
    }
}

impl fmt::Debug for DevicePublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevicePublicKeys")
            .field("signing", &self.signing_hex())
            .field("encryption", &self.encryption_hex())
            .finish()
    }
}

fn decode_32(what: &'static str, text: &str) -> Result<[u8; 32], TransportError> {
    let bytes =
        hex::decode(text.trim().trim_start_matches("0x")).map_err(|e| TransportError::InvalidKey {
            what,
            reason: format!("not hex: {e}"),
        })?;
    bytes.try_into().map_err(|b: Vec<u8>| TransportError::InvalidKey {
        what,
        reason: format!("expected 32 bytes, got {}", b.len()),
    })
}

const IDENTITY_MAGIC: &[u8; 4] = b"VSID";
const IDENTITY_VERSION: u8 = 1;

/// A device's secret identity. `Debug` shows only the device id and public keys; the secret
/// keys are zeroized on drop (by `ed25519-dalek` and `x25519-dalek`).
pub struct DeviceIdentity {
    device_id: DeviceId,
    signing: SigningKey,
    encryption: <Kem as hpke::Kem>::PrivateKey,
    public: DevicePublicKeys,
}

impl DeviceIdentity {
    /// Generates a fresh identity for `device_id`.
    pub fn generate<R: RngCore + CryptoRng>(device_id: DeviceId, rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let (encryption, _) = Kem::gen_keypair(rng);
        Self::from_parts(device_id, signing, encryption)
    }

    fn from_parts(
        device_id: DeviceId,
        signing: SigningKey,
        encryption: <Kem as hpke::Kem>::PrivateKey,
    ) -> Self {
        let enc_public = Kem::sk_to_pk(&encryption);
        let public = DevicePublicKeys {
            signing: signing.verifying_key(),
            encryption: enc_public.to_bytes().into(),
        };
        DeviceIdentity {
            device_id,
            signing,
            encryption,
            public,
        }
    }

    /// The same keys bound to another device id: a new device's identity is made before
    /// the coordinator assigns its id, and rebound to that id once registered.
    pub fn with_device_id(self, device_id: DeviceId) -> Self {
        DeviceIdentity { device_id, ..self }
    }

    /// The device this identity belongs to.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The public keys to register with the coordinator.
    pub fn public_keys(&self) -> &DevicePublicKeys {
        &self.public
    }

    /// The Ed25519 signing key, for signing outgoing approval requests (RFC 9421).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub(crate) fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        self.signing.sign(message)
    }

    pub(crate) fn hpke_secret(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.encryption
    }

    /// Serialises the identity for the keystore: `"VSID" ‖ version ‖ len ‖ device id ‖
    /// Ed25519 seed (32) ‖ X25519 secret (32)`. The buffer is zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let id = self.device_id.as_str().as_bytes();
        let mut out = Zeroizing::new(Vec::with_capacity(4 + 1 + 1 + id.len() + 64));
        out.extend_from_slice(IDENTITY_MAGIC);
        out.push(IDENTITY_VERSION);
        out.push(id.len() as u8); // ≤ MAX_DEVICE_ID_LEN
        out.extend_from_slice(id);
        out.extend_from_slice(self.signing.as_bytes());
        let enc = Zeroizing::new(self.encryption.to_bytes());
        out.extend_from_slice(&enc);
        out
    }

    /// Reads bytes made by [`DeviceIdentity::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransportError> {
        let bad = |reason: &str| TransportError::InvalidKey {
            what: "device identity",
            reason: reason.into(),
        };
        let rest = bytes
            .strip_prefix(IDENTITY_MAGIC)
            .ok_or_else(|| bad("not a device identity"))?;
        let (version, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        if *version != IDENTITY_VERSION {
            return Err(bad(&format!("unknown version {version}")));
        }
        let (len, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        let (id, keys) = rest
            .split_at_checked(usize::from(*len))
            .ok_or_else(|| bad("truncated"))?;
        if keys.len() != 64 {
            return Err(bad("wrong length"));
        }
        let id = std::str::from_utf8(id).map_err(|_| bad("device id is not UTF-8"))?;
        let device_id = DeviceId::new(id)?;
        let (seed, enc) = keys.split_at(32);
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(seed.try_into().map_err(|_| bad("wrong length"))?);
        let signing = SigningKey::from_bytes(&seed);
        let encryption =
            <Kem as hpke::Kem>::PrivateKey::from_bytes(enc).map_err(|_| bad("bad encryption key"))?;
        Ok(Self::from_parts(device_id, signing, encryption))
    }
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .field("public", &self.public)
            .field("secret_keys", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_topic_safe() {
        for good in ["a", "dev-1", "0f1e2d3c-aaaa-bbbb-cccc-000000000000", "x.y_z:1"] {
            DeviceId::new(good).unwrap();
        }
        for bad in ["", "a/b", "a+b", "#", "é", &"x".repeat(65)] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identity_round_trips_and_hides_secrets() {
        let id = DeviceIdentity::generate(DeviceId::new("dev-a").unwrap(), &mut rand_core::OsRng);
        let bytes = id.to_bytes();
        let back = DeviceIdentity::from_bytes(&bytes).unwrap();
        assert_eq!(back.public_keys(), id.public_keys());
        assert_eq!(back.device_id(), id.device_id());
        let shown = format!("{id:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains(&hex::encode(id.signing_key().as_bytes())));
        for cut in 0..bytes.len() {
            assert!(DeviceIdentity::from_bytes(&bytes[..cut]).is_err());
        }
        let keys = id.public_keys();
        let parsed = DevicePublicKeys::from_hex(&keys.signing_hex(), &keys.encryption_hex()).unwrap();
        assert_eq!(&parsed, keys);
        assert!(DevicePublicKeys::from_hex("zz", &keys.encryption_hex()).is_err());
        assert!(DevicePublicKeys::from_hex(&keys.signing_hex(), "00").is_err());
        // Small-order Ed25519 (the identity point) and low-order X25519 (zero) keys.
        let identity_point = format!("01{}", "00".repeat(31));
        assert!(DevicePublicKeys::from_hex(&identity_point, &keys.encryption_hex()).is_err());
        assert!(DevicePublicKeys::from_hex(&keys.signing_hex(), &"00".repeat(32)).is_err());
    }

    #[test]
    fn rebinding_keeps_the_keys() {
        let id = DeviceIdentity::generate(DeviceId::new("pending-1").unwrap(), &mut rand_core::OsRng);
        let keys = id.public_keys().clone();
        let seed = *id.signing_key().as_bytes();
        let bound = id.with_device_id(DeviceId::new("dev-9").unwrap());
        assert_eq!(bound.device_id().as_str(), "dev-9");
        assert_eq!(bound.public_keys(), &keys);
        assert_eq!(bound.signing_key().as_bytes(), &seed);
        let back = DeviceIdentity::from_bytes(&bound.to_bytes()).unwrap();
        assert_eq!(back.device_id().as_str(), "dev-9");
        assert_eq!(back.public_keys(), &keys);
    }
}
