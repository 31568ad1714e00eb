//! Reshares: a request to move a vault's key to a new signer set and threshold, the check
//! that no other reshare is open, and the new members' results.

use serde::Serialize;
use sqlx::AnyConnection;

use super::vaults::{signers_from_input, SignerInput};
use vsigner_records::StatementKind;

use super::lifecycle::Signed;
use super::{request_hash, Service};
use crate::domain::*;
use crate::error::{Error, Result};

/// `requestReshare` input.
#[derive(Debug, Clone, Serialize)]
pub struct RequestReshare {
    /// Vault.
    pub vault_id: String,
    /// New threshold.
    pub new_threshold: i64,
    /// New signers.
    pub new_signers: Vec<SignerInput>,
}

impl Service {
    /// Requests a reshare of an Active vault to a new signer set and threshold.
    pub async fn request_reshare(
        &self,
        p: &Principal,
        input: RequestReshare,
        key: Option<&str>,
    ) -> Result<Operation> {
        Self::require_operator(p)?;
        let hash = request_hash("requestReshare", &input)?;
        if let Some(id) = self.idempotent_existing(p, key, "requestReshare", &hash).await? {
            return self.operation(p, &id).await;
        }
        let vault = self.vault(p, &input.vault_id).await?;
        if vault.status != VaultStatus::Active {
            return Err(Error::invalid_state(format!(
                "vault {} is {}, not Active",
                vault.id,
                vault.status.as_str()
            )));
        }
        let new_signers = signers_from_input(&input.new_signers)?;
        let new_threshold = check_signer_set(&new_signers, input.new_threshold)?;
        {
            let mut tx = self.store.begin().await?;
            self.check_devices_exist(&mut tx, p, &new_signers).await?;
            tx.rollback().await?;
        }
        // Every attempt gets a generation of its own: above the vault's and above the
        // newest earlier reshare's (attempts of a vault are requested one after another;
        // if two requests race and share a number, devices that already hold a share of
        // that generation refuse the later run, which then fails).
        let newest_attempt = self
            .store
            .operations(
                &p.org_id,
                Some(vault.id.as_str()),
                &[],
                Some(OperationKind::Reshare),
                1,
            )
            .await?
            .first()
            .and_then(Operation::new_key_generation)
            .unwrap_or(0);
        let new_key_generation = vault.key_generation.max(newest_attempt).saturating_add(1);
        let details = OperationDetails::Reshare {
            old_threshold: vault.threshold,
            old_signers: vault.signers.clone(),
            new_threshold,
            new_signers,
            old_key_generation: vault.key_generation,
            new_key_generation: Some(new_key_generation),
        };
        let op = Operation::new(
            &vault,
            details,
            &p.client_id,
            self.clock.now(),
            &self.settings.expiry,
        );
        self.create_operation(p, "requestReshare", &hash, key, None, op)
            .await
    }

    /// Reshare result.
    pub async fn submit_reshare_result(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        public_key: &str,
        key_set_hash: &str,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let what = Signed::new(
            StatementKind::ReshareResult,
            vec![public_key, key_set_hash],
            device_signature,
        );
        self.act(p, op_id, device_id, what, |op, vault, d, now| {
            if let OperationDetails::Reshare {
                old_key_generation, ..
            } = &op.details
            {
                if *old_key_generation != vault.key_generation {
                    return Err(Error::invalid_state(
                        "the vault was reshared by another operation meanwhile",
                    ));
                }
            }
            op.submit_reshare_result(vault, d, public_key, key_set_hash, now)
        })
        .await
    }
}

impl Service {
    /// A reshare may open only while the vault is Active at the generation it replaces and
    /// no other reshare of it is open: checked atomically under the vault row lock
    /// (PostgreSQL; SQLite has one connection, so transactions are serialised anyway).
    pub(super) async fn reshare_may_open(
        &self,
        c: &mut AnyConnection,
        p: &Principal,
        op: &Operation,
        now: Millis,
    ) -> Result<()> {
        let Some(old_key_generation) = op.key_generation() else {
            return Ok(());
        };
        let (vault, _) = self
            .store
            .vault(c, &p.org_id, op.vault_id.as_str(), true)
            .await?
            .ok_or_else(|| Error::not_found("vault", op.vault_id.as_str()))?;
        if vault.status != VaultStatus::Active || vault.key_generation != old_key_generation {
            return Err(Error::invalid_state(format!(
                "vault {} changed meanwhile ({}, key generation {}); request the reshare again",
                vault.id,
                vault.status.as_str(),
                vault.key_generation
            )));
        }
        let open = self
            .store
            .open_operation_ids(c, &vault.id, Some(OperationKind::Reshare), Some(now))
            .await?;
        if let Some(other) = open.first() {
            return Err(Error::invalid_state(format!(
                "reshare {other} of vault {} is still open; wait for it to finish",
                vault.id
            )));
        }
        Ok(())
    }
}
