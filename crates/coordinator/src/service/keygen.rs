//! Vault creation: a Pending vault and its Keygen operation, and the members' results.

use super::vaults::{signers_from_input, CreateVault};
use vsigner_records::StatementKind;

use super::lifecycle::Signed;
use super::{request_hash, Service};
use crate::domain::*;
use crate::error::Result;

impl Service {
    /// Creates a vault (Pending) and its Keygen operation.
    pub async fn create_vault(
        &self,
        p: &Principal,
        input: CreateVault,
        key: Option<&str>,
    ) -> Result<Operation> {
        Self::require_operator(p)?;
        let hash = request_hash("createVault", &input)?;
        if let Some(id) = self.idempotent_existing(p, key, "createVault", &hash).await? {
            return self.operation(p, &id).await;
        }
        let now = self.clock.now();
        let signers = signers_from_input(&input.signers)?;
        let vault = new_vault(
            &p.org_id,
            &input.name,
            &input.curve,
            input.threshold,
            signers,
            now,
        )?;
        {
            let mut tx = self.store.begin().await?;
            self.check_devices_exist(&mut tx, p, &vault.signers).await?;
            tx.rollback().await?;
        }
        let details = OperationDetails::Keygen {
            threshold: vault.threshold,
            signers: vault.signers.clone(),
        };
        let op = Operation::new(&vault, details, &p.client_id, now, &self.settings.expiry);
        self.create_operation(p, "createVault", &hash, key, Some(&vault), op)
            .await
    }

    /// Keygen result.
    #[allow(clippy::too_many_arguments)] // the mutation's arguments, one each
    pub async fn submit_keygen_result(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        public_key: &str,
        chain_code: Option<&str>,
        key_set_hash: &str,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let content = vec![public_key, chain_code.unwrap_or_default(), key_set_hash];
        let what = Signed::new(StatementKind::KeygenResult, content, device_signature);
        self.act(p, op_id, device_id, what, |op, _, d, now| {
            op.submit_keygen_result(d, public_key, chain_code, key_set_hash, now)
        })
        .await
    }
}
