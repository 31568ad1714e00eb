//! The protocol run of one Ready operation for one device: the committee and its party
//! order, the transport session of each protocol, what is stored, and what is submitted.
//!
//! # Layout
//! - this file: [`RunContext::run`] (one entry point for every operation kind), the
//!   [`Submission`] and [`RunFailure`] it ends with, the [`Committee`], execution ids and the
//!   transport session of one protocol.
//! - The stages each kind goes through, whatever the scheme: [`keygen`], [`sign`],
//!   [`reshare`], [`presign`] (committee checks, loading and storing shares).
//! - [`scheme`]: the [`Scheme`](scheme::Scheme) trait, what a signature scheme does
//!   (keygen, sign, reshare, its share records), and the table from a vault's curve to
//!   its implementation: [`ecdsa`] (CGGMP24, with [`aux_info`]) and [`schnorr`] (FROST).
//!
//! # Parties, party order and execution ids
//! A committee is a list of parties: a device of weight `w` holds `w` shares
//! ([`share_set::share_indices`]) and runs one party per share it uses, all in this
//! process ([`RunContext::session`]). The coordinator orders the parties (sign: by share
//! index; keygen: by index; reshare: parties with a new share by new index, then the others
//! by old index); position `p` in that list is party `p` of the run. Every run's [`ExecutionId`] hashes its protocol tag, the
//! operation id, the vault id, the ordered committee device ids, the coordinator's fresh
//! nonce and the run's terms (key generations, thresholds and set sizes), so every member
//! derives the same id, no message of another run is accepted, and members told different
//! terms cannot run together.
//! An aux-info run that follows a keygen or reshare has its own tag and the new set in
//! new-index order.
//!
//! # Storage
//! Share records are `(device, vault, key generation)`; each scheme has its own record
//! format ([`scheme::Scheme::summary`] reads it back), and a device's several shares of one
//! generation are one record ([`share_set`]). A share is written once the whole run
//! (including aux-info) succeeded, before the result is submitted; it is confirmed (and the
//! previous generation destroyed) only after the coordinator completes the operation.

pub mod aux_info;
pub mod continuity;
pub mod ecdsa;
pub mod keygen;
pub mod presign;
pub mod reshare;
pub mod scheme;
pub mod schnorr;
pub mod share_set;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vsigner_approval::{ApprovalRequest, Operation as Requested};
use vsigner_keystore::{Keystore, RecordId};
use vsigner_transport::{DeviceId, DeviceIdentity, DevicePublicKeys, Link, SessionSpec};
use vsigner_tss::ecdsa::AuxInfoOptions;
use vsigner_tss::primes::PublicTestPrimes;
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag};
use zeroize::Zeroizing;

use crate::approval_request;
use crate::coordinator_api::{CommitteeMember, Operation};
use crate::metrics::{self, Protocol};
use crate::prime_stock::PrimeStock;

pub use scheme::{key_set_hash, share_exports, share_summary, ExportedShare};

/// What a device hands to the coordinator after a successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// `submitKeygenResult`.
    Keygen {
        /// Hex public key.
        public_key: String,
        /// Hex chain code (secp256k1).
        chain_code: Option<String>,
        /// Hex key-set hash.
        key_set_hash: String,
        /// The generation stored.
        generation: u64,
    },
    /// `submitReshareResult` (new members).
    Reshare {
        /// Hex public key (unchanged).
        public_key: String,
        /// Hex key-set hash of the new shares.
        key_set_hash: String,
        /// The generation stored.
        generation: u64,
    },
    /// An old-only member of a reshare: nothing to submit; its share is destroyed once the
    /// coordinator completes the reshare.
    Departed {
        /// The new generation it leaves at.
        generation: u64,
    },
    /// `submitPresignResult`.
    Presign {
        /// Hex SHA-256 of the presignature's public data.
        fingerprint: String,
    },
    /// `submitSignature`.
    Signature {
        /// Hex `r‖s` or Ed25519 signature.
        signature: String,
        /// secp256k1 recovery id.
        recovery_id: Option<u8>,
    },
}

/// A failed run: why, and the devices the protocol or the transport proved at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// One line, no secret.
    pub reason: String,
    /// Device ids named by the protocol.
    pub culprits: Vec<String>,
}

impl RunFailure {
    /// A failure that names nobody.
    pub fn new(reason: impl Into<String>) -> Self {
        RunFailure {
            reason: reason.into(),
            culprits: Vec::new(),
        }
    }
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)?;
        if !self.culprits.is_empty() {
            write!(f, " (culprits: {})", self.culprits.join(", "))?;
        }
        Ok(())
    }
}

/// What a run needs from its device and instance.
pub struct RunContext {
    /// The device's identity.
    pub identity: Arc<DeviceIdentity>,
    /// Its MQTT link.
    pub link: Arc<Link>,
    /// The instance keystore.
    pub keystore: Arc<Keystore>,
    /// The instance prime stock.
    pub primes: PrimeStock,
    /// How long a run waits for the next message.
    pub idle_timeout: Duration,
    /// How long a run waits for a prime set when the stock is empty.
    pub prime_wait: Duration,
    /// Aux-info options (multi-exponentiation tables).
    pub aux_options: AuxInfoOptions,
    /// The public test primes to refuse (`None` with `AllowPublicTestPrimes`).
    pub public_test_primes: Option<Arc<PublicTestPrimes>>,
    /// This process's presignatures (never stored).
    pub presignatures: Arc<presign::Presignatures>,
    /// The device's durable mark that it runs the operation, written meanwhile.
    pub run_mark: RunMark,
}

/// The device's durable mark that it runs an operation (the daemon's `run_marks`: a device
/// runs an operation at most once), written while the run starts. A run sends no message
/// that depends on a key share before the mark is written: every protocol waits for it before
/// its first message, except a scheme whose signing holds only its share back until then
/// ([`Scheme::SIGN_WAITS_FOR_RUN_MARK`](scheme::Scheme::SIGN_WAITS_FOR_RUN_MARK): FROST sends
/// its fresh nonce commitments meanwhile, which reveal nothing of the share and are never used
/// again if the run ends there). A mark that cannot be written ends the run, with the mark's
/// reason and no culprit (FROST may have sent its commitments by then).
#[derive(Clone)]
pub struct RunMark(futures::future::Shared<futures::future::BoxFuture<'static, Result<(), String>>>);

impl RunMark {
    /// The mark that `writing` writes (driven by whoever waits for it first).
    pub fn new(writing: impl std::future::Future<Output = Result<(), String>> + Send + 'static) -> Self {
        use futures::FutureExt as _;
        RunMark(writing.boxed().shared())
    }

    /// Resolves once the mark is durable; the reason it could not be written otherwise.
    pub async fn written(&self) -> Result<(), RunFailure> {
        self.0.clone().await.map_err(RunFailure::new)
    }

    /// Why the mark could not be written, once that is known.
    fn failed(&self) -> Option<String> {
        self.0.peek().and_then(|r| r.as_ref().err().cloned())
    }
}

/// The committee of a run: its parties in party order.
pub struct Committee {
    /// The parties, position = party index (a device of weight above 1 may run several).
    pub members: Vec<CommitteeMember>,
    /// The parties this device runs, ascending.
    pub mine: Vec<u16>,
}

impl Committee {
    /// The committee of `op` as the coordinator ordered it; `me` must run a party in it.
    pub fn new(op: &Operation, me: &str) -> Result<Self, RunFailure> {
        let members = op.committee.clone();
        // A reshare's parties: at most every old and every new share.
        if members.len() > 2 * usize::from(share_set::MAX_SHARES) {
            return Err(RunFailure::new(format!(
                "the committee has {} parties; a vault has at most {} shares",
                members.len(),
                share_set::MAX_SHARES
            )));
        }
        let mine: Vec<u16> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.device_id == me)
            .map(|(p, _)| p as u16)
            .collect();
        if mine.is_empty() {
            return Err(RunFailure::new("this device is not in the committee"));
        }
        Ok(Committee { members, mine })
    }

    /// The party `p`.
    pub fn member(&self, p: u16) -> &CommitteeMember {
        &self.members[usize::from(p)]
    }

    /// The device ids in party order.
    pub fn ids(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.device_id.as_str()).collect()
    }

    /// Every member, in party order.
    pub fn all(&self) -> Vec<&CommitteeMember> {
        self.members.iter().collect()
    }
}

fn peers(members: &[&CommitteeMember]) -> Result<Vec<(DeviceId, DevicePublicKeys)>, RunFailure> {
    members
        .iter()
        .map(|m| {
            let id = DeviceId::new(m.device_id.clone())
                .map_err(|e| RunFailure::new(format!("committee device id: {e}")))?;
            let keys = DevicePublicKeys::from_hex(&m.identity_signing_key, &m.identity_encryption_key)
                .map_err(|e| RunFailure::new(format!("identity keys of {}: {e}", m.device_id)))?;
            Ok((id, keys))
        })
        .collect()
}

/// The terms of a run that every participant must agree on beyond the committee: the
/// vault's scheme; a reshare's old and new key generations, thresholds and set sizes; the
/// key generation a keygen writes or a signature or presignature uses; for a signature
/// what it signs (payload kind and bytes, derivation path, Taproot tweak); and the share
/// each party uses and receives (with weighted devices, which of its shares a device's
/// party stands for is the coordinator's choice: devices told different shares, and so
/// computing different Lagrange coefficients, must not run together). Bound into the
/// execution id, so that devices told different terms (a coordinator labelling one reshare
/// generation 2 for some and 3 for others, or showing a Taproot tweak or a path to some
/// members only) cannot run together: the run never starts, and nobody honest is blamed
/// for the mismatch (docs/reshare.md, "Commit").
fn run_terms(op: &Operation) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
        put(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    put_bytes(&mut out, op.curve.as_bytes());
    match (op.kind.as_str(), &op.reshare, &op.sign, &op.presign) {
        ("Reshare", Some(r), _, _) => {
            for v in [
                r.old_key_generation,
                r.new_generation(),
                u64::from(r.old_threshold),
                u64::from(r.new_threshold),
                r.old_signers.len() as u64,
                r.new_signers.len() as u64,
            ] {
                put(&mut out, v);
            }
        }
        ("Sign", _, Some(s), _) => {
            put(&mut out, s.key_generation);
            put_bytes(&mut out, s.payload_kind.as_bytes());
            put_bytes(
                &mut out,
                &Sha256::digest(s.payload.to_ascii_lowercase().as_bytes()),
            );
            put_bytes(&mut out, s.derivation_path.as_deref().unwrap_or("").as_bytes());
            match &s.taproot {
                None => put(&mut out, 0),
                Some(t) => {
                    put(&mut out, 1);
                    put_bytes(&mut out, t.merkle_root.as_deref().unwrap_or("").as_bytes());
                }
            }
        }
        ("Presign", _, _, Some(p)) => put(&mut out, p.key_generation),
        _ => put(&mut out, op.vault.key_generation),
    }
    // The signer sets with their weights (which number the shares) and thresholds.
    let sets: Vec<(&[crate::coordinator_api::VaultSigner], u16)> = match (&op.keygen, &op.reshare) {
        (Some(k), _) => vec![(&k.signers, k.threshold)],
        (_, Some(r)) => vec![
            (&r.old_signers, r.old_threshold),
            (&r.new_signers, r.new_threshold),
        ],
        _ => vec![(&op.vault.signers, op.vault.threshold)],
    };
    for (set, threshold) in sets {
        put(&mut out, u64::from(threshold));
        put(&mut out, set.len() as u64);
        for s in set {
            put_bytes(&mut out, s.device_id.as_bytes());
            put(&mut out, u64::from(s.weight));
            put(&mut out, u64::from(s.index));
        }
    }
    // Every index of every party, as each protocol reads it.
    put(&mut out, op.committee.len() as u64);
    for m in &op.committee {
        for index in [m.index, m.old_index, m.new_index] {
            put(&mut out, index.map_or(u64::MAX, u64::from));
        }
    }
    out
}

fn execution_id(tag: ProtocolTag, op: &Operation, participants: &[&str]) -> Result<ExecutionId, RunFailure> {
    let nonce = hex::decode(&op.nonce).map_err(|_| RunFailure::new("the operation nonce is not hex"))?;
    if nonce.len() < 16 {
        return Err(RunFailure::new("the operation nonce is shorter than 16 bytes"));
    }
    // The coordinator's nonce, then the run's terms (length-prefixed by the derivation).
    let mut fresh = nonce;
    fresh.extend_from_slice(b"/terms/");
    fresh.extend_from_slice(&run_terms(op));
    Ok(ExecutionId::derive(&ExecutionContext {
        protocol: tag,
        operation_id: &op.id,
        vault_id: &op.vault_id,
        participants,
        nonce: &fresh,
    }))
}

/// Maps a protocol error's culprit party indices to device ids.
fn protocol_failure(
    what: &str,
    e: &vsigner_tss::Error,
    parties: &[String],
    transport_culprit: Option<DeviceId>,
) -> RunFailure {
    let mut culprits: Vec<String> = e
        .culprits()
        .into_iter()
        .map(|p| {
            parties
                .get(usize::from(p))
                .cloned()
                .unwrap_or_else(|| format!("party {p}"))
        })
        .collect();
    if let Some(c) = transport_culprit {
        if !culprits.contains(&c.as_str().to_owned()) {
            culprits.push(c.as_str().to_owned());
        }
    }
    RunFailure {
        reason: format!("{what} failed: {e}"),
        culprits,
    }
}

impl RunContext {
    /// This device's id.
    pub fn me(&self) -> &str {
        self.identity.device_id().as_str()
    }

    /// Runs the protocol of `op` (Ready, this device in the committee), whose content
    /// matched the approved `request`.
    pub async fn run(
        &self,
        op: &Operation,
        request: Option<&ApprovalRequest>,
    ) -> Result<Submission, RunFailure> {
        continuity::check(&self.keystore, self.me(), op)
            .await
            .map_err(RunFailure::new)?;
        if op.kind == "Presign" {
            // Nothing is signed: no approval; the signature that uses it is approved as usual.
            self.run_mark.written().await?;
            return self.presign(op).await;
        }
        let request = request.ok_or_else(|| RunFailure::new("no approved request"))?;
        let curve = request.vault.curve;
        let signs = matches!(request.operation, Requested::Sign { .. });
        if !(signs && scheme::with_scheme!(curve, S => <S as scheme::Scheme>::SIGN_WAITS_FOR_RUN_MARK)) {
            self.run_mark.written().await?;
        }
        let result = match &request.operation {
            Requested::CreateVault => scheme::with_scheme!(curve, S => self.keygen::<S>(op).await),
            Requested::Sign {
                payload,
                derivation_path,
                taproot,
            } => {
                let input = approval_request::signing_input(op, payload).map_err(|e| RunFailure::new(e.0))?;
                let what = sign::Signing {
                    payload,
                    input: &input,
                    path: derivation_path.as_deref(),
                    taproot: taproot.as_ref(),
                };
                scheme::with_scheme!(curve, S => self.sign::<S>(op, &what).await)
            }
            Requested::Reshare { .. } => scheme::with_scheme!(curve, S => self.reshare::<S>(op).await),
        };
        // A run that ended because its mark could not be written (FROST signing learns it
        // inside the protocol) fails for that reason, naming no peer: a local storage fault
        // is nobody's misbehaviour.
        result.map_err(|failure| match self.run_mark.failed() {
            Some(reason) => RunFailure::new(reason),
            None => failure,
        })
    }

    /// The share record of `vault` at `generation` (all of this device's shares:
    /// [`share_set::decode`]).
    async fn load_share(&self, vault: &str, generation: u64) -> Result<Zeroizing<Vec<u8>>, RunFailure> {
        let id =
            RecordId::key_share(self.me(), vault, generation).map_err(|e| RunFailure::new(e.to_string()))?;
        self.keystore
            .get(&id)
            .await
            .map_err(|e| RunFailure::new(format!("keystore: {e}")))?
            .ok_or_else(|| {
                RunFailure::new(format!(
                    "this device holds no share of vault {vault} at key generation {generation}"
                ))
            })
    }

    /// Stores a new share record of `vault` at `generation` (unconfirmed until confirmed:
    /// a keygen's when the coordinator completes it, a reshare's when it is committed). A
    /// generation is written once: a share already stored there is never replaced.
    async fn store_share(&self, vault: &str, generation: u64, bytes: &[u8]) -> Result<(), RunFailure> {
        let id =
            RecordId::key_share(self.me(), vault, generation).map_err(|e| RunFailure::new(e.to_string()))?;
        self.keystore
            .put(&id, bytes)
            .await
            .map_err(|e| RunFailure::new(format!("cannot store the new share: {e}")))
    }

    /// Opens the transport session of one protocol among the parties `members` and runs
    /// `protocol(party, execution id, party index)` for each party this device runs in it,
    /// together, timing it. The results come in party order; the first failure ends every
    /// party of this device.
    pub async fn session<T, F, Fut>(
        &self,
        tag: ProtocolTag,
        op: &Operation,
        members: &[&CommitteeMember],
        protocol_metric: Option<Protocol>,
        protocol: F,
    ) -> Result<Vec<T>, RunFailure>
    where
        F: Fn(vsigner_transport::SessionParty, ExecutionId, u16) -> Fut,
        Fut: std::future::Future<Output = Result<T, vsigner_tss::Error>>,
    {
        let ids: Vec<&str> = members.iter().map(|m| m.device_id.as_str()).collect();
        let eid = execution_id(tag, op, &ids)?;
        let spec = SessionSpec {
            execution_id: eid,
            participants: peers(members)?,
            idle_timeout: self.idle_timeout,
        };
        let sessions = self
            .link
            .open_sessions(spec)
            .map_err(|e| RunFailure::new(format!("cannot open the {} session: {e}", tag.as_str())))?;
        let report = sessions
            .first()
            .map(|s| s.report())
            .ok_or_else(|| RunFailure::new("this device runs no party of the session"))?;
        let started = Instant::now();
        let span = tracing::info_span!("protocol", protocol = tag.as_str(), execution_id = %eid, parties = ids.len(), mine = sessions.len());
        let runs = sessions.into_iter().map(|s| {
            let p = s.party_index();
            protocol(s.into_party(), eid, p)
        });
        let result = tracing::Instrument::instrument(futures::future::try_join_all(runs), span).await;
        if let Some(m) = protocol_metric {
            metrics::protocol_duration(m, started.elapsed());
        }
        let names: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        result.map_err(|e| protocol_failure(tag.as_str(), &e, &names, report.culprit()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn execution_ids_need_the_coordinator_nonce() {
        let op: Operation = serde_json::from_value(serde_json::json!({
            "id": "op", "organisationId": "o", "kind": "Sign", "state": "Ready", "vaultId": "v", "curve": "secp256k1",
            "nonce": "ab".repeat(32), "createdAt": "", "updatedAt": "", "expiresAt": "",
            "vault": {"id": "v", "organisationId": "o", "name": "n", "curve": "secp256k1", "threshold": 2, "signers": [],
                      "publicKey": null, "chainCode": null, "keyGeneration": 0, "keySetHash": null, "status": "Active", "ethereumAddress": null},
            "committee": [], "submittedDeviceIds": [], "keygen": null, "reshare": null, "sign": null, "result": null,
            "failure": null, "rejectionReason": null, "startedBy": null
        }))
        .unwrap();
        let a = execution_id(ProtocolTag::EcdsaSign, &op, &["x", "y"]).unwrap();
        assert_ne!(
            a,
            execution_id(ProtocolTag::EcdsaSign, &op, &["y", "x"]).unwrap(),
            "party order"
        );
        assert_ne!(
            a,
            execution_id(ProtocolTag::EcdsaAuxInfo, &op, &["x", "y"]).unwrap(),
            "protocol"
        );
        // Told another new generation, a device derives another id: it cannot run with the
        // others.
        let mut reshare = op.clone();
        reshare.kind = "Reshare".into();
        reshare.reshare = Some(crate::coordinator_api::ReshareDetails {
            old_threshold: 2,
            old_signers: vec![],
            new_threshold: 2,
            new_signers: vec![],
            old_key_generation: 1,
            new_key_generation: Some(2),
        });
        let labelled_2 = execution_id(ProtocolTag::Reshare, &reshare, &["x", "y"]).unwrap();
        if let Some(r) = reshare.reshare.as_mut() {
            r.new_key_generation = Some(3);
        }
        assert_ne!(
            labelled_2,
            execution_id(ProtocolTag::Reshare, &reshare, &["x", "y"]).unwrap(),
            "the new generation is part of the run"
        );
        // Told another scheme, payload, path or Taproot tweak than the others, a device
        // derives another id: split views never run together.
        let mut sign = op.clone();
        sign.sign = Some(
            serde_json::from_value(serde_json::json!({
                "payloadKind": "message", "payload": "0102", "signingDigest": null,
                "derivationPath": null, "taproot": null, "chainId": null, "keyGeneration": 0, "presignatureId": null
            }))
            .unwrap(),
        );
        let base = execution_id(ProtocolTag::SchnorrSign, &sign, &["x", "y"]).unwrap();
        let variants: [fn(&mut Operation); 5] = [
            |o| o.curve = "ed25519".into(),
            |o| o.sign.as_mut().unwrap().payload = "0103".into(),
            |o| o.sign.as_mut().unwrap().payload_kind = "digest".into(),
            |o| o.sign.as_mut().unwrap().derivation_path = Some("m/1".into()),
            |o| {
                o.sign.as_mut().unwrap().taproot =
                    Some(crate::coordinator_api::TaprootDetails { merkle_root: None })
            },
        ];
        for (k, change) in variants.iter().enumerate() {
            let mut other = sign.clone();
            change(&mut other);
            assert_ne!(
                base,
                execution_id(ProtocolTag::SchnorrSign, &other, &["x", "y"]).unwrap(),
                "variant {k}"
            );
        }
        // Told that a party stands for another share than the others were, a device derives
        // another id.
        let member = |old_index: u16| -> crate::coordinator_api::CommitteeMember {
            serde_json::from_value(serde_json::json!({
                "deviceId": "x", "name": "x", "identitySigningKey": "aa", "identityEncryptionKey": "bb",
                "index": old_index, "oldIndex": old_index, "newIndex": null}))
            .unwrap()
        };
        let (mut share_0, mut share_1) = (sign.clone(), sign.clone());
        share_0.committee = vec![member(0)];
        share_1.committee = vec![member(1)];
        assert_ne!(
            execution_id(ProtocolTag::SchnorrSign, &share_0, &["x"]).unwrap(),
            execution_id(ProtocolTag::SchnorrSign, &share_1, &["x"]).unwrap(),
            "the share each party uses is part of the run"
        );
        let mut short = op.clone();
        short.nonce = "ab".repeat(8);
        assert!(execution_id(ProtocolTag::EcdsaSign, &short, &["x", "y"]).is_err());
        let mut bad = op;
        bad.nonce = "zz".into();
        assert!(execution_id(ProtocolTag::EcdsaSign, &bad, &["x", "y"]).is_err());
    }
}
