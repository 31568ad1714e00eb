//! ECDSA presignatures: a presign operation of a fixed committee (Ready at once: a
//! presignature signs nothing), its results, and its use by exactly one signature.

use super::{
    AuditEvent, ClientId, CommitteeMember, DeviceId, Error, ErrorCode, ExpiryPolicy, KeyResult, Millis,
    Operation, OperationDetails, OperationKind, OperationResult, OperationState, Outcome, Result,
    SignPayload, Vault,
};
use crate::crypto;

impl Operation {
    /// A presignature operation for `committee` (device ids of current signers, each with
    /// all its shares, whose weights add up to the threshold), Ready at once: a presignature
    /// signs nothing, so nobody votes on it.
    pub fn new_presign(
        vault: &Vault,
        committee: &[DeviceId],
        created_by: &ClientId,
        now: Millis,
        expiry: &ExpiryPolicy,
    ) -> Result<Self> {
        if !vault.curve.has_presignatures() {
            return Err(Error::invalid_input(
                "presignatures exist for ECDSA vaults (secp256k1, secp256r1) only",
            ));
        }
        let shares = super::share_indices(&vault.signers);
        let mut members: Vec<CommitteeMember> = Vec::new();
        for (k, d) in committee.iter().enumerate() {
            let position = vault
                .signers
                .iter()
                .position(|s| &s.device_id == d)
                .ok_or_else(|| {
                    Error::invalid_input(format!("device {d} is not a signer of vault {}", vault.id))
                })?;
            if committee[..k].contains(d) {
                return Err(Error::invalid_input(format!("device {d} appears twice")));
            }
            for index in shares[position].clone() {
                members.push(CommitteeMember {
                    device_id: d.clone(),
                    old_index: Some(index),
                    new_index: None,
                });
            }
        }
        if members.len() != usize::from(vault.threshold) {
            return Err(Error::invalid_input(format!(
                "a presignature committee's weights add up to exactly the threshold ({}), got {}",
                vault.threshold,
                members.len()
            )));
        }
        members.sort_by_key(|m| m.old_index);
        let details = OperationDetails::Presign {
            key_generation: vault.key_generation,
            consumed_by: None,
            discarded_by: None,
        };
        let mut op = Self::new(vault, details, created_by, now, expiry);
        op.committee = members;
        op.state = OperationState::Ready;
        Ok(op)
    }

    /// A committee member's presignature result: a fingerprint of the presignature's
    /// public data, on which every member must agree. Completed when all agree.
    pub fn submit_presign_result(
        &mut self,
        vault: &Vault,
        device: &DeviceId,
        fingerprint_hex: &str,
        now: Millis,
    ) -> Result<Outcome> {
        if self.kind() != OperationKind::Presign {
            return Err(Error::invalid_state(format!(
                "operation {} is not a presign",
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
        let fingerprint =
            crypto::decode_hex_array::<32>("fingerprint", fingerprint_hex, ErrorCode::InvalidInput)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        // The key the presignature is for, with the fingerprint: both must agree.
        self.key_results.push(KeyResult {
            device_id: device.clone(),
            public_key: vault.public_key.clone().unwrap_or_default(),
            chain_code: None,
            key_set_hash: Some(hex::encode(fingerprint)),
        });
        out.events.push(AuditEvent::new(
            "presign_result",
            Some(device),
            serde_json::json!({"fingerprint": hex::encode(fingerprint)}),
        ));
        if self.fail_on_disagreement("presign", "a different presignature", now, &mut out) {
            return Ok(out);
        }
        if self.key_results.len() == self.committee_devices().len() {
            self.result = Some(OperationResult {
                key_set_hash: Some(hex::encode(fingerprint)),
                ..OperationResult::default()
            });
            self.set_state(
                OperationState::Completed,
                now,
                &mut out,
                "every committee member holds the same presignature",
            );
        }
        Ok(out)
    }

    /// Whether this sign operation may use a presignature: an ECDSA vault, a payload the
    /// protocol hashes itself (eth_tx, message), the root key.
    pub fn can_use_presignature(&self) -> bool {
        matches!(
            &self.details,
            OperationDetails::Sign {
                payload: SignPayload::EthTx(_) | SignPayload::Message(_),
                derivation_path: None,
                presignature: None,
                ..
            }
        ) && self.curve.has_presignatures()
    }

    /// Whether this is a presignature a signature can still take: a Completed presign
    /// operation neither consumed nor discarded.
    pub fn is_free_presignature(&self) -> bool {
        self.state == OperationState::Completed
            && matches!(
                self.details,
                OperationDetails::Presign {
                    consumed_by: None,
                    discarded_by: None,
                    ..
                }
            )
    }

    /// Whether this is a free presignature ([`Operation::is_free_presignature`]) that can
    /// serve a sign operation `sign` (same vault, key generation and committee parties).
    pub fn presignature_serves(&self, sign: &Operation) -> bool {
        let OperationDetails::Presign { key_generation, .. } = &self.details else {
            return false;
        };
        let ids = |c: &[CommitteeMember]| {
            let mut v: Vec<(DeviceId, Option<u16>)> =
                c.iter().map(|m| (m.device_id.clone(), m.old_index)).collect();
            v.sort();
            v
        };
        self.is_free_presignature()
            && self.vault_id == sign.vault_id
            && sign.key_generation() == Some(*key_generation)
            && ids(&self.committee) == ids(&sign.committee)
    }

    /// Records that committee member `device` no longer holds its part of this Completed,
    /// unconsumed presignature, which can then serve no signature. `None` when there is
    /// nothing to discard (another kind or state, consumed, discarded, not a member).
    pub fn discard_presignature(&mut self, device: &DeviceId, now: Millis) -> Option<Outcome> {
        let member = self.committee.iter().any(|m| &m.device_id == device);
        let OperationDetails::Presign {
            consumed_by: None,
            discarded_by: discarded @ None,
            ..
        } = &mut self.details
        else {
            return None;
        };
        if !member || self.state != OperationState::Completed {
            return None;
        }
        *discarded = Some(device.clone());
        self.updated_at = now;
        let mut out = Outcome::default();
        out.events.push(AuditEvent::new(
            "presignature_discarded",
            Some(device),
            serde_json::json!({"by": device}),
        ));
        Some(out)
    }

    /// Records that `sign` uses this presignature, and `sign` that it uses it.
    pub fn consume_presignature(&mut self, sign: &mut Operation, now: Millis) -> Outcome {
        let mut out = Outcome::default();
        if let OperationDetails::Presign { consumed_by, .. } = &mut self.details {
            *consumed_by = Some(sign.id.clone());
        }
        if let OperationDetails::Sign { presignature, .. } = &mut sign.details {
            *presignature = Some(self.id.clone());
        }
        self.updated_at = now;
        out.events.push(AuditEvent::new(
            "presignature_consumed",
            None,
            serde_json::json!({"by": sign.id}),
        ));
        out
    }
}
