//! What a keygen adds to the lifecycle: every committee member reports the vault key,
//! its chain code and the key-set hash; the vault becomes Active when all agree.

use super::{
    AuditEvent, DeviceId, Error, ErrorCode, KeyResult, Millis, Operation, OperationKind, OperationResult,
    OperationState, Outcome, Result, VaultUpdate,
};
use crate::crypto;

impl Operation {
    /// A keygen result from a committee member. All must agree on the public key, the
    /// chain code and the key-set hash; the vault becomes Active when every member has
    /// submitted the same values.
    pub fn submit_keygen_result(
        &mut self,
        device: &DeviceId,
        public_key_hex: &str,
        chain_code_hex: Option<&str>,
        key_set_hash_hex: &str,
        now: Millis,
    ) -> Result<Outcome> {
        if self.kind() != OperationKind::Keygen {
            return Err(Error::invalid_state(format!(
                "operation {} is not a keygen",
                self.id
            )));
        }
        self.check_running_member(device, now)?;
        if self.key_results.iter().any(|r| &r.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadySubmitted,
                format!("device {device} already submitted"),
            ));
        }
        let raw = crypto::decode_hex("publicKey", public_key_hex)?;
        let public_key = self.curve.public_key(&raw)?;
        let chain_code = self.curve.chain_code(chain_code_hex)?;
        let key_set_hash =
            crypto::decode_hex_array::<32>("keySetHash", key_set_hash_hex, ErrorCode::InvalidInput)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        self.key_results.push(KeyResult {
            device_id: device.clone(),
            public_key,
            chain_code,
            key_set_hash: Some(hex::encode(key_set_hash)),
        });
        out.events.push(AuditEvent::new(
            "keygen_result",
            Some(device),
            serde_json::json!({"publicKey": public_key_hex, "keySetHash": hex::encode(key_set_hash)}),
        ));
        // Anyone outside the largest agreeing group is named (everyone, on a tie).
        if self.fail_on_disagreement(
            "keygen",
            "a different public key, chain code or key-set hash",
            now,
            &mut out,
        ) {
            return Ok(out);
        }
        if self.key_results.len() == self.committee_devices().len() {
            let first = self.key_results.first().cloned();
            if let Some(first) = first {
                let chain_code = match &first.chain_code {
                    Some(cc) => {
                        let bytes = hex::decode(cc).map_err(|e| Error::internal("chain code", e))?;
                        Some(
                            <[u8; 32]>::try_from(bytes.as_slice())
                                .map_err(|e| Error::internal("chain code", e))?,
                        )
                    }
                    None => None,
                };
                self.result = Some(OperationResult {
                    public_key: Some(hex::encode(&first.public_key)),
                    chain_code: first.chain_code.clone(),
                    key_set_hash: Some(hex::encode(key_set_hash)),
                    ..OperationResult::default()
                });
                out.vault_update = Some(VaultUpdate::Activate {
                    public_key: first.public_key,
                    chain_code,
                    key_set_hash,
                });
                self.set_state(
                    OperationState::Completed,
                    now,
                    &mut out,
                    "all committee members reported the same key and key-set hash",
                );
            }
        }
        Ok(out)
    }
}
