//! The demo's reshare: a new device joins, the secp256k1 vault moves to (T+1)-of-(N+1) with
//! the same key, and a committee that includes the new device signs.

use std::time::{Duration, Instant};

use serde_json::json;
use vsigner_tss::primes::PrimeSet;

use super::checks::{check_digest, random_32, vault_state, VaultState};
use super::ms;
use super::report::{ReshareOut, Shape, SignatureOut};
use super::script::Demo;
use crate::operator::text;

impl Demo<'_> {
    /// A new device joins and the secp256k1 vault is reshared to (T+1)-of-(N+1) with the
    /// same key; returns the reshare, the vault after it and the new device's id.
    pub(super) async fn reshare(
        &mut self,
        secp: &VaultState,
        generation_before: Option<u64>,
        newcomer_sets: &[PrimeSet],
    ) -> anyhow::Result<(ReshareOut, VaultState, String)> {
        let (n, t) = (self.n, self.t);
        let newcomer_name = format!("device-{}", usize::from(n) + 1);
        let newcomer = self
            .steps
            .run(
                format!("a new virtual signer {newcomer_name} started"),
                self.system.add_signer(&newcomer_name, newcomer_sets),
            )
            .await?;
        let mut new_set = self.ids.clone();
        new_set.push(newcomer.clone());
        let operator = &self.system.operator;
        let system = &self.system;
        let reshare_op = self
            .steps
            .run(
                format!(
                    "secp256k1 vault reshared to {}-of-{} with {newcomer_name} (same key; new shares and aux-info)",
                    t + 1,
                    n + 1
                ),
                async {
                    let start = Instant::now();
                    let op = operator.request_reshare(&secp.id, t + 1, &new_set).await?;
                    let op = system
                        .completed(&op, "reshare", Duration::from_secs(600))
                        .await?;
                    Ok((op, start.elapsed()))
                },
            )
            .await?;
        let after = self.system.operator.vault(&secp.id).await?;
        let key_after = hex::decode(text(&after["publicKey"])).unwrap_or_default();
        let unchanged = key_after == secp.public_key;
        if !unchanged {
            self.problems
                .push("the reshare changed the vault's public key".to_owned());
        }
        let reshared = vault_state(&after, "secp256k1")?;
        if reshared.threshold != t + 1 || reshared.signers != new_set {
            self.problems.push(format!(
                "after the reshare the vault is {}-of-{} with other devices, not {}-of-{} with {newcomer_name}",
                reshared.threshold,
                reshared.signers.len(),
                t + 1,
                n + 1
            ));
        }
        if after["keyGeneration"].as_u64() != generation_before.map(|g| g + 1) {
            self.problems
                .push("the reshare did not start a new key generation".to_owned());
        }
        let out = ReshareOut {
            vault: secp.id.clone(),
            from: Shape {
                threshold: secp.threshold,
                devices: secp.signers.len(),
            },
            to: Shape {
                threshold: reshared.threshold,
                devices: reshared.signers.len(),
            },
            public_key: hex::encode(&key_after),
            public_key_unchanged: unchanged,
            joined: vec![newcomer.clone()],
            operation: text(&reshare_op.0["id"]).to_owned(),
            latency_ms: ms(reshare_op.1),
        };
        Ok((out, reshared, newcomer))
    }

    /// A digest signed by a committee that includes the new device. The coordinator takes
    /// the first approvers as the committee: the first old devices abstain, so that exactly
    /// the others and the newcomer approve. Returns the signature and who abstained.
    pub(super) async fn sign_after_reshare(
        &mut self,
        reshared: &VaultState,
        newcomer: &str,
    ) -> anyhow::Result<(SignatureOut, Vec<String>)> {
        let t = self.t;
        let newcomer_name = self.system.device_name(newcomer).to_owned();
        let abstaining: Vec<String> = self
            .ids
            .iter()
            .take(usize::from(self.n) - usize::from(t))
            .cloned()
            .collect();
        self.system.approver.abstain_on_signatures(&abstaining);
        let digest = random_32();
        let abstainers = abstaining
            .iter()
            .map(|d| self.system.device_name(d).to_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let (op, took) = self
            .steps
            .run(
                format!(
                    "secp256k1: a digest signed by {} devices including {newcomer_name}{}",
                    t + 1,
                    if abstainers.is_empty() {
                        String::new()
                    } else {
                        format!(" ({abstainers} abstained)")
                    }
                ),
                self.system.sign(
                    json!({"vaultId": reshared.id, "digest": hex::encode(digest)}),
                    "signature after the reshare",
                ),
            )
            .await?;
        self.system.approver.abstain_on_signatures(&[]);
        let out = check_digest(reshared, &digest, &op, took, &mut self.problems)?;
        if !out.signers.iter().any(|s| s == newcomer) {
            self.problems.push(format!(
                "the signature after the reshare was made by {:?}, not {} devices including {newcomer}",
                out.signers,
                t + 1
            ));
        }
        Ok((out, abstaining))
    }
}
