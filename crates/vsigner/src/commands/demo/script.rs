//! What the demo does, step by step, on a [`LocalSystem`]: start it, create the vaults,
//! sign, create a vault of weighted devices and sign with it, show a rejection, reshare to a new device and sign with it ([`super::reshare`]),
//! then compare the webhook's own record with the coordinator's.

use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};
use sha3::{Digest as _, Keccak256};
use vsigner_tss::primes::PrimeSet;

use super::checks::{
    check_digest, check_message, random_32, signature_fields, vault_state, SignedBy, VaultState,
};
use super::report::{Outcome, RejectedOut, SignatureOut, VaultOut};
use super::{ms, verify, DemoArgs, Steps};
use crate::operator::text;
use crate::system::approver::REJECT_MARKER;
use crate::system::{LocalSystem, SystemSettings};

/// The demo's vaults, one of each scheme.
pub(super) struct Vaults {
    secp: VaultState,
    ed: VaultState,
    p256: VaultState,
    bip340: VaultState,
}

impl Vaults {
    fn all(&self) -> [&VaultState; 4] {
        [&self.secp, &self.ed, &self.p256, &self.bip340]
    }
}

/// The demo as it goes: the system, the step timer, and every check that failed.
pub(super) struct Demo<'a> {
    pub(super) n: u16,
    pub(super) t: u16,
    pub(super) system: LocalSystem,
    pub(super) steps: &'a mut Steps,
    pub(super) problems: Vec<String>,
    /// The first devices' ids, in order.
    pub(super) ids: Vec<String>,
}

/// Runs the demo: every step of the module docs, in order.
pub(super) async fn demo(
    args: &DemoArgs,
    sets: Vec<PrimeSet>,
    public_primes: bool,
    steps: &mut Steps,
) -> anyhow::Result<Outcome> {
    let (mut demo, newcomer_sets) = Demo::start(args, sets, public_primes, steps).await?;
    let (all, secp_generation, mut vaults) = demo.vaults().await?;
    let mut signatures = demo.signatures(&all).await?;
    let (weighted_vault, weighted_signature) = demo.weighted().await?;
    vaults.push(weighted_vault);
    signatures.push(weighted_signature);
    let Vaults { secp, ed, .. } = all;
    let rejected_op = demo.rejection(&ed).await?;
    let rejected = vec![RejectedOut {
        vault: ed.id.clone(),
        operation: text(&rejected_op["id"]).to_owned(),
        reason: rejected_op["rejectionReason"]
            .as_str()
            .unwrap_or("rejected by the approver")
            .to_owned(),
    }];
    let (reshare, reshared, newcomer) = demo.reshare(&secp, secp_generation, &newcomer_sets).await?;
    let (after, abstaining) = demo.sign_after_reshare(&reshared, &newcomer).await?;
    signatures.push(after);
    for s in &mut signatures {
        s.signer_names = s
            .signers
            .iter()
            .map(|d| demo.system.device_name(d).to_owned())
            .collect();
    }
    let after_id = signatures.last().map(|s| s.operation.clone()).unwrap_or_default();
    demo.check_webhook_record(text(&rejected_op["id"]), &after_id, &abstaining);
    if args.console {
        demo.open_console().await?;
    }
    demo.steps
        .run("signers stopped", async {
            demo.system.shutdown().await;
            Ok(())
        })
        .await?;
    Ok(Outcome {
        vaults,
        signatures,
        reshares: vec![reshare],
        rejected,
        problems: demo.problems,
    })
}

impl<'a> Demo<'a> {
    /// Starts the system and the first N signers; returns the prime sets kept for the
    /// device that joins later.
    async fn start(
        args: &DemoArgs,
        sets: Vec<PrimeSet>,
        public_primes: bool,
        steps: &'a mut Steps,
    ) -> anyhow::Result<(Demo<'a>, Vec<PrimeSet>)> {
        let (n, t) = (args.devices, args.threshold);
        let nu = usize::from(n);
        let mut system = steps
            .run(
                "coordinator (temporary SQLite), embedded MQTT broker and approval webhook started",
                LocalSystem::start(SystemSettings {
                    broker: args.broker.clone(),
                    allow_public_test_primes: public_primes,
                    ..SystemSettings::default()
                }),
            )
            .await?;
        eprintln!("    files in {}", system.dir().display());
        let mut sets: Vec<Option<PrimeSet>> = sets.into_iter().map(Some).collect();
        let mut take = |i: usize| sets.get_mut(i).and_then(Option::take);
        let mut keygen_and_reshare_sets = Vec::new();
        for i in 0..nu {
            keygen_and_reshare_sets.push([take(i), take(nu + i)].into_iter().flatten().collect::<Vec<_>>());
        }
        let newcomer_sets: Vec<PrimeSet> = take(2 * nu).into_iter().collect();
        steps
            .run(
                format!("{n} virtual signers started, each its own daemon and keystore"),
                async {
                    for (i, primes) in keygen_and_reshare_sets.iter().enumerate() {
                        system.add_signer(&format!("device-{}", i + 1), primes).await?;
                    }
                    Ok(())
                },
            )
            .await?;
        let ids: Vec<String> = system.signers.iter().map(|s| s.device_id.clone()).collect();
        let demo = Demo {
            n,
            t,
            system,
            steps,
            problems: Vec::new(),
            ids,
        };
        Ok((demo, newcomer_sets))
    }

    /// One vault of each scheme, checked: secp256k1, ed25519 and bip340 created
    /// concurrently, then secp256r1 (it reuses the aux-info the secp256k1 keygen made for
    /// the same devices). Also returns the secp256k1 vault's key generation.
    async fn vaults(&mut self) -> anyhow::Result<(Vaults, Option<u64>, Vec<VaultOut>)> {
        let (n, t) = (self.n, self.t);
        let system = &self.system;
        let ((secp_vault, secp_took), (ed_vault, ed_took), (bip_vault, bip_took)) = self
            .steps
            .run(
                format!(
                    "secp256k1, ed25519 and bip340 {t}-of-{n} vaults created (distributed key generation; ECDSA aux-info)"
                ),
                async {
                    tokio::try_join!(
                        system.create_vault("demo secp256k1", "secp256k1", t),
                        system.create_vault("demo ed25519", "ed25519", t),
                        system.create_vault("demo bip340", "bip340", t),
                    )
                },
            )
            .await?;
        let (p256_vault, p256_took) = self
            .steps
            .run(
                format!("secp256r1 (P-256) {t}-of-{n} vault created (the devices reuse their aux-info)"),
                system.create_vault("demo secp256r1", "secp256r1", t),
            )
            .await?;
        let vaults = Vaults {
            secp: vault_state(&secp_vault, "secp256k1")?,
            ed: vault_state(&ed_vault, "ed25519")?,
            p256: vault_state(&p256_vault, "secp256r1")?,
            bip340: vault_state(&bip_vault, "bip340")?,
        };
        for v in vaults.all() {
            if v.threshold != t || v.signers != self.ids {
                self.problems.push(format!(
                    "the coordinator holds the {} vault as {}-of-{} with other devices, not the requested {t}-of-{n}",
                    v.curve,
                    v.threshold,
                    v.signers.len()
                ));
            }
        }
        let secp = &vaults.secp;
        match (
            &secp.address,
            k256::ecdsa::VerifyingKey::from_sec1_bytes(&secp.public_key),
        ) {
            (Some(a), Ok(k)) if verify::eth_address(&k) == *a => {}
            _ => self
                .problems
                .push("the secp256k1 vault's address is not the one of its public key".to_owned()),
        }
        if vaults.bip340.taproot_output_key.is_none() || vaults.bip340.address.is_none() {
            self.problems
                .push("the bip340 vault reports no Taproot output key or address".to_owned());
        }
        let out = vault_out;
        let outs = vec![
            out(&vaults.secp, secp_took),
            out(&vaults.ed, ed_took),
            out(&vaults.p256, p256_took),
            out(&vaults.bip340, bip_took),
        ];
        Ok((vaults, secp_vault["keyGeneration"].as_u64(), outs))
    }

    /// A digest and an EIP-1559 transaction on secp256k1; a message on ed25519 (by the
    /// vault key and by a child key) and on P-256; on bip340 a 32-byte message (as a Bitcoin
    /// sighash is) for the vault key and one for its Taproot output key.
    async fn signatures(&mut self, vaults: &Vaults) -> anyhow::Result<Vec<SignatureOut>> {
        let (n, t) = (self.n, self.t);
        let secp = &vaults.secp;
        let mut signatures = Vec::new();
        let digest = random_32();
        let (op, took) = self
            .steps
            .run(
                "secp256k1: a 32-byte digest signed",
                self.system.sign(
                    json!({"vaultId": secp.id, "digest": hex::encode(digest)}),
                    "digest signature",
                ),
            )
            .await?;
        signatures.push(check_digest(secp, &digest, &op, took, &mut self.problems)?);

        let tx = verify::demo_transaction(0);
        let unsigned = verify::unsigned_bytes(&tx);
        let (op, took) = self
            .steps
            .run(
                "secp256k1: an EIP-1559 transaction signed (0.01 ETH to 0x…dEaD, not broadcast)",
                self.system.sign(
                    json!({"vaultId": secp.id, "ethTx": format!("0x{}", hex::encode(&unsigned))}),
                    "transaction signature",
                ),
            )
            .await?;
        let tx_digest: [u8; 32] = Keccak256::digest(&unsigned).into();
        let mut out = check_digest(secp, &tx_digest, &op, took, &mut self.problems)?;
        out.kind = "eth_tx";
        out.digest = None;
        let raw_signed = text(&op["result"]["rawTransaction"]).to_owned();
        let (sig, recid) = signature_fields(&op)?;
        let raw_bytes = hex::decode(raw_signed.trim_start_matches("0x")).unwrap_or_default();
        if let Err(e) = verify::eth_transaction(
            &tx,
            &raw_bytes,
            &sig,
            recid.unwrap_or(u8::MAX),
            secp.address.as_deref().unwrap_or_default(),
        ) {
            out.verified = false;
            self.problems.push(format!("eth_tx {}: {e}", out.operation));
        }
        out.raw_transaction = Some(raw_signed);
        signatures.push(out);

        let sighash = random_32();
        let child = [44, 501];
        let messages: [(&VaultState, Vec<u8>, SignedBy, &str); 5] = [
            (
                &vaults.ed,
                format!("vsigner demo: signed by a {t}-of-{n} ed25519 vault").into_bytes(),
                SignedBy::VaultKey,
                "ed25519: a message signed",
            ),
            (
                &vaults.ed,
                b"vsigner demo: signed by the ed25519 vault's child key m/44/501".to_vec(),
                SignedBy::Child(&child),
                "ed25519: a message signed by the child key m/44/501 (non-hardened, Edwards derivation)",
            ),
            (
                &vaults.p256,
                format!("vsigner demo: signed by a {t}-of-{n} P-256 vault").into_bytes(),
                SignedBy::VaultKey,
                "secp256r1: a message signed (ECDSA over its SHA-256)",
            ),
            (
                &vaults.bip340,
                random_32().to_vec(),
                SignedBy::VaultKey,
                "bip340: a 32-byte message signed (BIP-340 Schnorr)",
            ),
            (
                &vaults.bip340,
                sighash.to_vec(),
                SignedBy::Taproot,
                "bip340: a 32-byte message signed for the Taproot output key (BIP-341 key path)",
            ),
        ];
        for (vault, message, by, step) in messages {
            let mut input = json!({"vaultId": vault.id, "message": hex::encode(&message)});
            match by {
                SignedBy::Taproot => input["taproot"] = json!(true),
                SignedBy::Child(_) => input["derivationPath"] = json!("m/44/501"),
                SignedBy::VaultKey => {}
            }
            let (op, took) = self
                .steps
                .run(step, self.system.sign(input, "message signature"))
                .await?;
            signatures.push(check_message(vault, &message, by, &op, took, &mut self.problems)?);
        }
        Ok(signatures)
    }

    /// A vault of weighted devices: the first holds two shares (it runs two parties of
    /// every protocol), the threshold is one share more than the others', so every
    /// committee has the first device; a message signed and checked.
    async fn weighted(&mut self) -> anyhow::Result<(VaultOut, SignatureOut)> {
        let (n, t) = (self.n, self.t);
        let (shares, threshold) = (n + 1, t + 1);
        let first = self.system.device_name(&self.ids[0]).to_owned();
        let (vault, took) = self
            .steps
            .run(
                format!("ed25519 vault of weighted devices created: {first} holds 2 of {shares} shares, {threshold} sign"),
                self.system
                    .create_weighted_vault("demo weighted", "ed25519", threshold, &[2]),
            )
            .await?;
        let vault = vault_state(&vault, "ed25519")?;
        if vault.weights.first() != Some(&2) || vault.threshold != threshold {
            self.problems.push(format!(
                "the coordinator holds the weighted vault with weights {:?} and threshold {}, not the requested",
                vault.weights, vault.threshold
            ));
        }
        let message =
            format!("vsigner demo: signed by {threshold} of {shares} shares, two of them one device's")
                .into_bytes();
        let (op, signed_took) = self
            .steps
            .run(
                "ed25519 (weighted): a message signed by a committee in which one device runs two parties",
                self.system.sign(
                    json!({"vaultId": vault.id, "message": hex::encode(&message)}),
                    "message signature",
                ),
            )
            .await?;
        let out = check_message(
            &vault,
            &message,
            SignedBy::VaultKey,
            &op,
            signed_took,
            &mut self.problems,
        )?;
        Ok((vault_out(&vault, took), out))
    }

    /// A request the approver rejects ends Rejected, unsigned.
    async fn rejection(&mut self, ed: &VaultState) -> anyhow::Result<Value> {
        let refused = format!("{REJECT_MARKER}: a request the approval webhook refuses").into_bytes();
        let operator = &self.system.operator;
        self.steps
            .run("ed25519: a request the approver rejects is not signed", async {
                let op = operator
                    .request_signature(json!({"vaultId": ed.id, "message": hex::encode(&refused)}))
                    .await?;
                let op = operator
                    .wait_final(text(&op["id"]), Duration::from_secs(120))
                    .await?;
                if op["state"] != "Rejected" {
                    bail!(
                        "operation {} ended {}, not Rejected",
                        text(&op["id"]),
                        text(&op["state"])
                    );
                }
                if !op["result"]["signature"].is_null() {
                    bail!("the rejected operation {} carries a signature", text(&op["id"]));
                }
                Ok(op)
            })
            .await
    }

    /// `--console`: a console user, the address, then the system keeps running until Ctrl-C
    /// or SIGTERM.
    async fn open_console(&mut self) -> anyhow::Result<()> {
        let made = self.system.operator.create_console_user("demo", "admin").await?;
        let password = made["password"].as_str().unwrap_or_default().to_owned();
        eprintln!(
            "\nThe web console is open at {url}\n  organisation id: {org}\n  name:            demo\n  password:        {password}\n(an admin of this demo's throwaway organisation; the system stops with Ctrl-C)\n",
            url = self.system.console_url(),
            org = self.system.org_id(),
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        eprintln!("stopping");
        Ok(())
    }

    /// The webhook authenticated every request, and its own record agrees with the
    /// coordinator's: it rejected the rejected operation, and exactly the chosen devices
    /// abstained on the signature after the reshare.
    fn check_webhook_record(&mut self, rejected_id: &str, after_id: &str, abstaining: &[String]) {
        let refused_requests = self.system.approver.refused_requests();
        if !refused_requests.is_empty() {
            self.problems.push(format!(
                "the approval webhook refused {} unauthenticated request(s): {}",
                refused_requests.len(),
                refused_requests.join("; ")
            ));
        }
        let decisions = self.system.approver.decisions();
        if !decisions
            .iter()
            .any(|d| d.operation == rejected_id && d.status == "rejected")
        {
            self.problems.push(format!(
                "the webhook never rejected {rejected_id}, yet it was Rejected"
            ));
        }
        for d in decisions.iter().filter(|d| d.operation == after_id) {
            if (d.status == "abstain") != abstaining.contains(&d.device) {
                self.problems
                    .push(format!("device {} answered {} on {after_id}", d.device, d.status));
            }
        }
    }
}

fn vault_out(v: &VaultState, took: Duration) -> VaultOut {
    VaultOut {
        id: v.id.clone(),
        curve: v.curve.to_owned(),
        threshold: v.threshold,
        devices: v.signers.len(),
        signers: v.signers.clone(),
        weights: v.weights.clone(),
        public_key: hex::encode(&v.public_key),
        address: v.address.clone(),
        chain_code: v.chain_code.map(hex::encode),
        taproot_output_key: v.taproot_output_key.as_ref().map(hex::encode),
        keygen_ms: ms(took),
    }
}
