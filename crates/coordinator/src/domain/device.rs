//! Devices: a virtual signer or a person's device, with the identity keys its peers use.

use serde::{Deserialize, Serialize};

use super::{check_name, ClientId, DeviceId, Millis, OrgId};
use crate::crypto;
use crate::error::{Error, ErrorCode, Result};
use vsigner_records::SignedDeviceRecord;

str_enum!(/// Device kind.
    DeviceKind, ErrorCode::InvalidInput, "device kind" {
    /// A server-side virtual signer.
    Virtual => "virtual",
    /// A device whose votes come from a person.
    Manual => "manual",
});

str_enum!(/// Device status.
    DeviceStatus, ErrorCode::InvalidInput, "device status" {
    /// Can vote and sign.
    Active => "Active",
});

/// A device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// Id.
    pub id: DeviceId,
    /// Organisation.
    pub org_id: OrgId,
    /// Human name.
    pub name: String,
    /// Virtual or manual.
    pub kind: DeviceKind,
    /// Ed25519 identity public key (signs MPC messages).
    pub identity_signing_key: [u8; 32],
    /// X25519 identity public key (MPC message encryption).
    pub identity_encryption_key: [u8; 32],
    /// Status.
    pub status: DeviceStatus,
    /// The signer API client that registered it (the only client that may act as it).
    pub registered_by: ClientId,
    /// Creation time.
    pub created_at: Millis,
    /// The device's own signed record of its keys, once it published one.
    #[serde(skip)]
    pub record: Option<SignedDeviceRecord>,
}

/// Checks and builds a new device from client input.
pub fn new_device(
    org_id: &OrgId,
    registered_by: &ClientId,
    name: &str,
    kind: &str,
    identity_signing_key_hex: &str,
    identity_encryption_key_hex: &str,
    now: Millis,
) -> Result<Device> {
    let name = check_name("device name", name)?;
    let kind = DeviceKind::parse(kind)?;
    let sk = crypto::decode_hex_array::<32>(
        "identitySigningKey",
        identity_signing_key_hex,
        ErrorCode::InvalidInput,
    )?;
    crypto::check_ed25519_identity_key(&sk)?;
    let ek = crypto::decode_hex_array::<32>(
        "identityEncryptionKey",
        identity_encryption_key_hex,
        ErrorCode::InvalidInput,
    )?;
    crypto::check_x25519_identity_key(&ek)?;
    Ok(Device {
        id: DeviceId::random(),
        org_id: org_id.clone(),
        name,
        kind,
        identity_signing_key: sk,
        identity_encryption_key: ek,
        status: DeviceStatus::Active,
        registered_by: registered_by.clone(),
        created_at: now,
        record: None,
    })
}

impl Device {
    /// Takes the device's signed record of its keys (hex). It must verify under the
    /// device's registered signing key and name this organisation, this device and its
    /// keys; a newer revision may carry a new encryption key (rotation), which replaces the
    /// registered one; an older revision, or another record of the same revision, is
    /// refused. Returns whether anything changed.
    pub fn publish_record(&mut self, record_hex: &str) -> Result<bool> {
        let bad = |why: String| Error::new(ErrorCode::DeviceRecordInvalid, why);
        let signed = SignedDeviceRecord::from_hex(record_hex.trim()).map_err(|e| bad(e.to_string()))?;
        let r = &signed.record;
        if r.organisation_id != self.org_id.as_str() || r.device_id != self.id.as_str() {
            return Err(bad(format!(
                "the record is of device {} in organisation {}, not of device {} in organisation {}",
                r.device_id, r.organisation_id, self.id, self.org_id
            )));
        }
        if r.signing_key != self.identity_signing_key {
            return Err(bad(
                "the record names another signing key than the device's".into()
            ));
        }
        signed
            .verify()
            .map_err(|e| bad(format!("the record of device {}: {e}", self.id)))?;
        crypto::check_x25519_identity_key(&r.encryption_key)?;
        match &self.record {
            Some(current) if current == &signed => return Ok(false),
            Some(current) if current.record.revision >= r.revision => {
                return Err(bad(format!(
                    "device {} already published revision {}; a record must have a higher revision",
                    self.id, current.record.revision
                )))
            }
            None if r.revision == 0 => return Err(bad("revisions start at 1".into())),
            None if r.encryption_key != self.identity_encryption_key => {
                return Err(bad(
                    "the first record must name the encryption key the device registered".into(),
                ))
            }
            _ => {}
        }
        self.identity_encryption_key = r.encryption_key;
        self.record = Some(signed);
        Ok(true)
    }
}
