//! Devices: a virtual signer or a person's device, with the identity keys its peers use.

use serde::{Deserialize, Serialize};

use super::{check_name, ClientId, DeviceId, Millis, OrgId};
use crate::crypto;
use crate::error::{Error, ErrorCode, Result};

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
    })
}
