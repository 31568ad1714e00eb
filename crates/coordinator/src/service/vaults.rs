//! Vault reads, and the signer sets clients give for new vaults and reshares.

use serde::Serialize;
use sqlx::AnyConnection;

use super::Service;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// A signer in an input.
#[derive(Debug, Clone, Serialize)]
pub struct SignerInput {
    /// Device id.
    pub device_id: String,
    /// Weight (must be 1).
    pub weight: i64,
}

/// `createVault` input.
#[derive(Debug, Clone, Serialize)]
pub struct CreateVault {
    /// Name.
    pub name: String,
    /// `secp256k1` | `ed25519`.
    pub curve: String,
    /// Threshold.
    pub threshold: i64,
    /// Signers.
    pub signers: Vec<SignerInput>,
}

pub(super) fn signers_from_input(input: &[SignerInput]) -> Result<Vec<Signer>> {
    input
        .iter()
        .map(|s| {
            let weight = u32::try_from(s.weight).map_err(|_| {
                Error::new(
                    ErrorCode::UnsupportedWeight,
                    format!(
                        "device {} has weight {}; a weight is a number of shares, at least 1",
                        s.device_id, s.weight
                    ),
                )
            })?;
            Ok(Signer {
                device_id: DeviceId::from_string(s.device_id.clone()),
                weight,
            })
        })
        .collect()
}

impl Service {
    /// A vault (after expiring due operations, so a lapsed keygen shows `Failed`).
    pub async fn vault(&self, p: &Principal, id: &str) -> Result<Vault> {
        self.sweep_expired(Some(&p.org_id)).await?;
        self.store
            .vault_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("vault", id))
    }

    /// A vault as stored (no expiry sweep; for nested reads).
    pub async fn vault_as_stored(&self, p: &Principal, id: &str) -> Result<Vault> {
        self.store
            .vault_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("vault", id))
    }

    /// All vaults (after expiring due operations).
    pub async fn vaults(&self, p: &Principal) -> Result<Vec<Vault>> {
        self.sweep_expired(Some(&p.org_id)).await?;
        self.store.vaults(&p.org_id).await
    }

    pub(super) async fn check_devices_exist(
        &self,
        c: &mut AnyConnection,
        p: &Principal,
        signers: &[Signer],
    ) -> Result<()> {
        for s in signers {
            if self
                .store
                .device(c, &p.org_id, s.device_id.as_str())
                .await?
                .is_none()
            {
                return Err(Error::not_found("device", s.device_id.as_str()));
            }
        }
        Ok(())
    }
}
