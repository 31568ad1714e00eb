//! What a reshare adds to the lifecycle: every new member reports the vault's key (which
//! must not change) and the key-set hash of the new shares; the vault moves to the new
//! signer set, threshold and key generation when all agree.

use super::{
    AuditEvent, DeviceId, Error, ErrorCode, KeyResult, Millis, Operation, OperationDetails, OperationResult,
    OperationState, Outcome, Result, Vault, VaultUpdate,
};
use crate::crypto;

impl Operation {
    /// A reshare result from a new member: the public key, which must be the vault's,
    /// and the key-set hash of the new shares, on which every new member must agree.
    pub fn submit_reshare_result(
        &mut self,
        vault: &Vault,
        device: &DeviceId,
        public_key_hex: &str,
        key_set_hash_hex: &str,
        now: Millis,
    ) -> Result<Outcome> {
        let OperationDetails::Reshare {
            new_signers,
            new_threshold,
            old_key_generation,
            ..
        } = &self.details
        else {
            return Err(Error::invalid_state(format!(
                "operation {} is not a reshare",
                self.id
            )));
        };
        let (new_signers, new_threshold, old_key_generation) =
            (new_signers.clone(), *new_threshold, *old_key_generation);
        self.check_running_member(device, now)?;
        if !self
            .committee
            .iter()
            .any(|m| &m.device_id == device && m.new_index.is_some())
        {
            return Err(Error::new(
                ErrorCode::NotInCommittee,
                format!(
                    "device {device} is not a new member of operation {}; only new members submit",
                    self.id
                ),
            ));
        }
        if self.key_results.iter().any(|r| &r.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadySubmitted,
                format!("device {device} already submitted"),
            ));
        }
        let raw = crypto::decode_hex("publicKey", public_key_hex)?;
        let public_key = self.curve.public_key(&raw)?;
        let key_set_hash =
            crypto::decode_hex_array::<32>("keySetHash", key_set_hash_hex, ErrorCode::InvalidInput)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        out.events.push(AuditEvent::new(
            "reshare_result",
            Some(device),
            serde_json::json!({"publicKey": public_key_hex, "keySetHash": hex::encode(key_set_hash)}),
        ));
        if vault.public_key.as_deref() != Some(public_key.as_slice()) {
            self.fail(
                format!("device {device} reported a public key different from the vault's"),
                vec![device.clone()],
                None,
                now,
                &mut out,
            );
            out.refusal = Some(Error::new(
                ErrorCode::ResultMismatch,
                "the reshared public key differs from the vault's; the operation failed",
            ));
            return Ok(out);
        }
        self.key_results.push(KeyResult {
            device_id: device.clone(),
            public_key,
            chain_code: None,
            key_set_hash: Some(hex::encode(key_set_hash)),
        });
        if self.fail_on_disagreement(
            "reshare",
            "a different key-set hash; the new shares are inconsistent and the old ones must be kept",
            now,
            &mut out,
        ) {
            return Ok(out);
        }
        let new_members = self.devices_of(|m| m.new_index.is_some()).len();
        if self.key_results.len() == new_members {
            let key_generation = self
                .new_key_generation()
                .unwrap_or(old_key_generation.saturating_add(1));
            self.result = Some(OperationResult {
                public_key: vault.public_key.as_ref().map(hex::encode),
                key_generation: Some(key_generation),
                key_set_hash: Some(hex::encode(key_set_hash)),
                ..OperationResult::default()
            });
            out.vault_update = Some(VaultUpdate::Reshared {
                signers: new_signers,
                threshold: new_threshold,
                key_generation,
                key_set_hash,
            });
            self.set_state(
                OperationState::Completed,
                now,
                &mut out,
                "every new member reported the vault key and the same key-set hash",
            );
        }
        Ok(out)
    }
}
