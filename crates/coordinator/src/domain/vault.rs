//! Vaults: a key held by a signer set, with its threshold, generation and status.

use serde::{Deserialize, Serialize};

use super::{check_name, DeviceId, Millis, OrgId, VaultId};
use crate::error::{Error, ErrorCode, Result};

str_enum!(/// Vault curve.
    Curve, ErrorCode::UnknownCurve, "curve" {
    /// ECDSA over secp256k1 (CGGMP24).
    Secp256k1 => "secp256k1",
    /// ECDSA over NIST P-256 (CGGMP24); messages are hashed with SHA-256.
    Secp256r1 => "secp256r1",
    /// EdDSA over Ed25519 (FROST).
    Ed25519 => "ed25519",
    /// BIP-340 Schnorr over secp256k1 (FROST), with the BIP-341 Taproot tweak on request.
    Bip340 => "bip340",
});

str_enum!(/// Vault status.
    VaultStatus, ErrorCode::InvalidInput, "vault status" {
    /// Keygen requested, not finished.
    Pending => "Pending",
    /// Key generated; can sign and reshare.
    Active => "Active",
    /// Keygen failed, was rejected or expired.
    Failed => "Failed",
});

/// A member of a vault's signer set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// Device.
    pub device_id: DeviceId,
    /// Voting weight, and the number of shares of the vault the device holds (its
    /// "signing power"): a device of weight `w` runs `w` parties of every protocol.
    pub weight: u32,
}

/// The most shares a vault has (the sum of its signers' weights): every share is a party of
/// every keygen and reshare, and the transport numbers parties with `u16`.
pub const MAX_SHARES: u32 = 255;

/// The share indices of each signer, in signer-set order: signer `k` holds `weight`
/// consecutive indices after those of the signers before it (with weights 1, its position).
pub fn share_indices(signers: &[Signer]) -> Vec<std::ops::Range<u16>> {
    let mut next = 0u16;
    signers
        .iter()
        .map(|s| {
            let start = next;
            next = next.saturating_add(u16::try_from(s.weight).unwrap_or(u16::MAX));
            start..next
        })
        .collect()
}

/// Checks a signer set and threshold: non-empty, no duplicates, weights of at least 1 and
/// at most [`MAX_SHARES`] shares in all, 1 ≤ t ≤ total weight.
pub fn check_signer_set(signers: &[Signer], threshold: i64) -> Result<u16> {
    if signers.is_empty() {
        return Err(Error::new(ErrorCode::InvalidThreshold, "the signer set is empty"));
    }
    if signers.len() > 255 {
        return Err(Error::invalid_input("at most 255 signers"));
    }
    for (i, s) in signers.iter().enumerate() {
        if s.weight == 0 || s.weight > MAX_SHARES {
            return Err(Error::new(
                ErrorCode::UnsupportedWeight,
                format!(
                    "device {} has weight {}; a weight is a number of shares, from 1 to {MAX_SHARES}",
                    s.device_id, s.weight
                ),
            ));
        }
        if signers.iter().take(i).any(|o| o.device_id == s.device_id) {
            return Err(Error::invalid_input(format!(
                "device {} appears twice in the signer set",
                s.device_id
            )));
        }
    }
    let total: i64 = signers.iter().map(|s| i64::from(s.weight)).sum();
    if total > i64::from(MAX_SHARES) {
        return Err(Error::new(
            ErrorCode::UnsupportedWeight,
            format!("the signers' weights add up to {total} shares; at most {MAX_SHARES}"),
        ));
    }
    if threshold < 1 || threshold > total {
        return Err(Error::new(
            ErrorCode::InvalidThreshold,
            format!("threshold must be between 1 and the signer set's total weight {total}, got {threshold}"),
        ));
    }
    u16::try_from(threshold).map_err(|_| Error::new(ErrorCode::InvalidThreshold, "threshold too large"))
}

/// A vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vault {
    /// Id.
    pub id: VaultId,
    /// Organisation.
    pub org_id: OrgId,
    /// Name.
    pub name: String,
    /// Curve.
    pub curve: Curve,
    /// Signing threshold (approving weight needed).
    pub threshold: u16,
    /// Signer set, in share-index order (see [`share_indices`]).
    pub signers: Vec<Signer>,
    /// Public key: SEC1 compressed (secp256k1) or 32 bytes (ed25519), once Active.
    pub public_key: Option<Vec<u8>>,
    /// BIP-32 chain code (secp256k1 only), once Active.
    pub chain_code: Option<[u8; 32]>,
    /// Key generation: 0 after keygen, +1 per completed reshare.
    pub key_generation: u32,
    /// Key-set hash of the current generation (see [`crypto::key_set_hash`]):
    /// SHA-256 over every party's public key share, in share-index order. Set once Active.
    #[serde(default)]
    pub key_set_hash: Option<[u8; 32]>,
    /// Status.
    pub status: VaultStatus,
    /// Creation time.
    pub created_at: Millis,
}

/// Checks vault input and builds a Pending vault.
pub fn new_vault(
    org_id: &OrgId,
    name: &str,
    curve: &str,
    threshold: i64,
    signers: Vec<Signer>,
    now: Millis,
) -> Result<Vault> {
    let name = check_name("vault name", name)?;
    let curve = Curve::parse(curve)?;
    let threshold = check_signer_set(&signers, threshold)?;
    Ok(Vault {
        id: VaultId::random(),
        org_id: org_id.clone(),
        name,
        curve,
        threshold,
        signers,
        public_key: None,
        chain_code: None,
        key_generation: 0,
        key_set_hash: None,
        status: VaultStatus::Pending,
        created_at: now,
    })
}
