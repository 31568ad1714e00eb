//! Runs the MPC protocol of one Ready operation for one device: keygen (+ aux-info for
//! ECDSA), signing, or reshare (+ aux-info of the new set for ECDSA); stores new shares in the
//! keystore and returns what to submit to the coordinator.
//!
//! # Party order and execution ids
//! The coordinator orders the committee (sign: by share index; keygen: by index; reshare:
//! new members by new index, then old-only members by old index); position `p` in that list
//! is party `p` of the run. Every run's [`ExecutionId`] hashes its protocol tag, the
//! operation id, the vault id, the ordered committee device ids and the coordinator's fresh
//! nonce, so every member derives the same id and no message of another run is accepted.
//! An aux-info run that follows a keygen or reshare has its own tag and the new set in
//! new-index order.
//!
//! # Storage
//! Share records are `(device, vault, key generation)`. ECDSA records hold the complete
//! cggmp24 key share (core share and the aux-info of the vault's device set); Schnorr
//! records hold the FROST key package. A share is written once the whole run (including
//! aux-info) succeeded, before the result is submitted; it is confirmed (and the previous
//! generation destroyed) only after the coordinator completes the operation.
//!
//! Aux-info is generated afresh for every ECDSA keygen and reshare, consuming one prime set
//! per device from the [`PrimeStock`] (docs/signer.md explains why it is not yet shared
//! between vaults on the same device set).

use std::sync::Arc;
use std::time::{Duration, Instant};

use generic_ec::Point;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use vsigner_approval::{ApprovalRequest, Curve, Operation as Requested, SignPayload};
use vsigner_keystore::{Keystore, RecordId};
use vsigner_transport::{DeviceId, DeviceIdentity, DevicePublicKeys, Link, SessionSpec};
use vsigner_tss::ecdsa::{self, AuxInfoOptions, HashAlgorithm, Message, Preimage, Secp256k1};
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::reshare::{KeyInfo, ReshareSetup, Role};
use vsigner_tss::schnorr::{self, Ed25519};
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag};
use zeroize::Zeroizing;

use crate::approval_request::{self, SigningInput};
use crate::coordinator_api::{CommitteeMember, Operation};
use crate::metrics::{self, Protocol};
use crate::prime_stock::PrimeStock;

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
    fn new(reason: impl Into<String>) -> Self {
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
}

/// The committee of a run, in party order.
struct Committee {
    members: Vec<CommitteeMember>,
    me: u16,
}

impl Committee {
    fn new(op: &Operation, me: &str) -> Result<Self, RunFailure> {
        let members = op.committee.clone();
        let position = members
            .iter()
            .position(|m| m.device_id == me)
            .ok_or_else(|| RunFailure::new("this device is not in the committee"))?;
        let mut seen = std::collections::BTreeSet::new();
        if !members.iter().all(|m| seen.insert(m.device_id.as_str())) {
            return Err(RunFailure::new("a device appears twice in the committee"));
        }
        Ok(Committee {
            members,
            me: position as u16,
        })
    }

    fn ids(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.device_id.as_str()).collect()
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

fn execution_id(tag: ProtocolTag, op: &Operation, participants: &[&str]) -> Result<ExecutionId, RunFailure> {
    let nonce = hex::decode(&op.nonce).map_err(|_| RunFailure::new("the operation nonce is not hex"))?;
    if nonce.len() < 16 {
        return Err(RunFailure::new("the operation nonce is shorter than 16 bytes"));
    }
    Ok(ExecutionId::derive(&ExecutionContext {
        protocol: tag,
        operation_id: &op.id,
        vault_id: &op.vault_id,
        participants,
        nonce: &nonce,
    }))
}

/// SHA-256 over the public key shares in index order, compressed (the coordinator's
/// `keySetHash`).
pub fn key_set_hash<E: generic_ec::Curve>(info: &KeyInfo<E>) -> String {
    let mut h = Sha256::new();
    for p in &info.public_shares {
        h.update(p.to_bytes(true));
    }
    hex::encode(h.finalize())
}

/// The keystore record of a device's aux-info for the ordered device set `members`, named
/// by a hash of the ordered device ids.
fn aux_record_id(me: &str, members: &[&CommitteeMember]) -> Result<RecordId, RunFailure> {
    let mut h = Sha256::new();
    h.update(b"vsigner/aux-info-set/v1");
    for m in members {
        h.update((m.device_id.len() as u32).to_be_bytes());
        h.update(m.device_id.as_bytes());
    }
    let name = format!("set-{}", hex::encode(&h.finalize()[..20]));
    RecordId::aux_info(me, &name).map_err(|e| RunFailure::new(e.to_string()))
}

/// The public key (hex) and key-set hash of a stored share record of a vault on `curve`.
pub fn share_summary(curve: &str, bytes: &[u8]) -> Result<(String, String), RunFailure> {
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("stored share: {e}"));
    match curve {
        "secp256k1" => {
            let core = ecdsa_core(bytes)?;
            let info = core.key_info().map_err(bad)?;
            Ok((hex::encode(core.public_key_bytes()), key_set_hash(&info)))
        }
        "ed25519" => {
            let share = schnorr::KeyShare::<Ed25519>::from_bytes(bytes).map_err(bad)?;
            let info = share.key_info().map_err(bad)?;
            Ok((
                hex::encode(share.public_key_bytes().map_err(bad)?),
                key_set_hash(&info),
            ))
        }
        other => Err(RunFailure::new(format!("unsupported curve {other:?}"))),
    }
}

const ECDSA_RECORD_MAGIC: &[u8; 4] = b"VSKE";

/// An ECDSA key-share record: `"VSKE" ‖ u32 length ‖ core share ‖ aux-info`, each in the
/// engine's versioned format (multi-exponentiation tables are not stored).
fn ecdsa_record(
    core: &ecdsa::CoreShare<Secp256k1>,
    aux: &ecdsa::AuxInfo,
) -> Result<Zeroizing<Vec<u8>>, RunFailure> {
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("key share does not encode: {e}"));
    let core = core.to_bytes().map_err(bad)?;
    let aux = aux.to_bytes().map_err(bad)?;
    let mut out = Zeroizing::new(Vec::with_capacity(8 + core.len() + aux.len()));
    out.extend_from_slice(ECDSA_RECORD_MAGIC);
    out.extend_from_slice(&(core.len() as u32).to_be_bytes());
    out.extend_from_slice(&core);
    out.extend_from_slice(&aux);
    Ok(out)
}

fn ecdsa_parts(bytes: &[u8]) -> Result<(&[u8], &[u8]), RunFailure> {
    let bad = || RunFailure::new("the stored ECDSA share record is malformed");
    let rest = bytes.strip_prefix(ECDSA_RECORD_MAGIC).ok_or_else(bad)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
    rest.split_at_checked(len).ok_or_else(bad)
}

fn ecdsa_core(bytes: &[u8]) -> Result<ecdsa::CoreShare<Secp256k1>, RunFailure> {
    let (core, _) = ecdsa_parts(bytes)?;
    ecdsa::CoreShare::from_bytes(core).map_err(|e| RunFailure::new(format!("stored share: {e}")))
}

fn ecdsa_share(bytes: &[u8]) -> Result<ecdsa::KeyShare<Secp256k1>, RunFailure> {
    let (core, aux) = ecdsa_parts(bytes)?;
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("stored share: {e}"));
    let core = ecdsa::CoreShare::from_bytes(core).map_err(bad)?;
    let aux = ecdsa::AuxInfo::from_bytes(aux).map_err(bad)?;
    ecdsa::KeyShare::from_parts(core, aux).map_err(bad)
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
    fn me(&self) -> &str {
        self.identity.device_id().as_str()
    }

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

    async fn store_share(&self, vault: &str, generation: u64, bytes: &[u8]) -> Result<(), RunFailure> {
        let id =
            RecordId::key_share(self.me(), vault, generation).map_err(|e| RunFailure::new(e.to_string()))?;
        // A share of this generation left by an earlier attempt the coordinator did not
        // complete (the vault is still at the previous generation) is discarded; a confirmed
        // one never is.
        if self.keystore.get(&id).await.ok().flatten().is_some() {
            self.keystore
                .discard_unconfirmed(self.me(), vault, generation)
                .await
                .map_err(|e| RunFailure::new(format!("cannot store the new share: {e}")))?;
            tracing::warn!(
                generation,
                "discarded the unconfirmed share of an earlier failed attempt"
            );
        }
        self.keystore
            .put(&id, bytes)
            .await
            .map_err(|e| RunFailure::new(format!("cannot store the new share: {e}")))
    }

    async fn take_primes(&self) -> Result<vsigner_tss::primes::PrimeSet, RunFailure> {
        let deadline = Instant::now() + self.prime_wait;
        let mut warned = false;
        loop {
            if let Some(set) = self
                .primes
                .take()
                .await
                .map_err(|e| RunFailure::new(format!("prime stock: {e}")))?
            {
                return Ok(set);
            }
            if Instant::now() >= deadline {
                return Err(RunFailure::new(
                    "no safe-prime set is ready for aux-info (raise PrimePoolTarget, or import primes with `vsigner primes import`)",
                ));
            }
            if !warned {
                tracing::warn!(
                    "waiting for a safe-prime set for aux-info; the background generator is working"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Opens the transport session of one run and runs `protocol` on it, timing it.
    async fn session<T, F, Fut>(
        &self,
        tag: ProtocolTag,
        op: &Operation,
        members: &[&CommitteeMember],
        protocol_metric: Option<Protocol>,
        protocol: F,
    ) -> Result<T, RunFailure>
    where
        F: FnOnce(vsigner_transport::SessionParty, ExecutionId) -> Fut,
        Fut: std::future::Future<Output = Result<T, vsigner_tss::Error>>,
    {
        let ids: Vec<&str> = members.iter().map(|m| m.device_id.as_str()).collect();
        let eid = execution_id(tag, op, &ids)?;
        let spec = SessionSpec {
            execution_id: eid,
            participants: peers(members)?,
            idle_timeout: self.idle_timeout,
        };
        let session = self
            .link
            .open_session(spec)
            .map_err(|e| RunFailure::new(format!("cannot open the {} session: {e}", tag.as_str())))?;
        let report = session.report();
        let started = Instant::now();
        let span = tracing::info_span!("protocol", protocol = tag.as_str(), execution_id = %eid, parties = ids.len());
        let result = tracing::Instrument::instrument(protocol(session.into_party(), eid), span).await;
        if let Some(m) = protocol_metric {
            metrics::protocol_duration(m, started.elapsed());
        }
        let names: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        result.map_err(|e| protocol_failure(tag.as_str(), &e, &names, report.culprit()))
    }

    /// Returns a prime set that was never used in a message to the stock.
    async fn put_back(&self, primes: Option<vsigner_tss::primes::PrimeSet>) {
        if let Some(p) = primes {
            if let Err(e) = self.primes.put(&p).await {
                tracing::warn!(error = %e, "could not return an unused prime set");
            }
        }
    }

    /// Asks the device set `members` (in party order; this device is party `i`) whether every
    /// member holds the same aux-info for exactly this ordered set; returns this device's
    /// aux-info if so.
    async fn agree_on_aux_info(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
        i: u16,
    ) -> Result<Option<ecdsa::AuxInfo>, RunFailure> {
        let id = aux_record_id(self.me(), members)?;
        let mine = match self.keystore.get(&id).await {
            Ok(Some(bytes)) => match ecdsa::AuxInfo::from_bytes(&bytes) {
                Ok(aux) => Some(aux),
                Err(e) => {
                    tracing::warn!(error = %e, "stored aux-info is unreadable; it will be generated again");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => return Err(RunFailure::new(format!("keystore: {e}"))),
        };
        let n = members.len() as u16;
        let reuse = self
            .session(ProtocolTag::EcdsaAuxInfoReuse, op, members, None, |party, eid| {
                let mine = mine.as_ref();
                async move { ecdsa::agree_on_reuse(party, eid, i, n, mine).await }
            })
            .await?;
        tracing::info!(reuse, devices = n, "aux-info of the device set");
        Ok(if reuse { mine } else { None })
    }

    /// Generates aux-info for the device set `members` with `primes`, and keeps it for the
    /// next vault of the same ordered set.
    async fn fresh_aux_info(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
        i: u16,
        primes: vsigner_tss::primes::PrimeSet,
    ) -> Result<ecdsa::AuxInfo, RunFailure> {
        let n = members.len() as u16;
        let options = self.aux_options;
        let aux = self
            .session(
                ProtocolTag::EcdsaAuxInfo,
                op,
                members,
                Some(Protocol::EcdsaAuxInfo),
                |party, eid| async move {
                    ecdsa::generate_aux_info(party, eid, i, n, primes, options, &mut OsRng).await
                },
            )
            .await?;
        // The set's cache is replaced (share records hold their own copy): a crash between
        // the two steps loses only the cache.
        let id = aux_record_id(self.me(), members)?;
        let bytes = aux
            .to_bytes()
            .map_err(|e| RunFailure::new(format!("aux-info: {e}")))?;
        let stored = async {
            if self.keystore.get(&id).await?.is_some() {
                self.keystore.delete(&id).await?;
            }
            self.keystore.put(&id, &bytes).await
        };
        if let Err(e) = stored.await {
            tracing::warn!(error = %e, "could not keep the aux-info for reuse");
        }
        Ok(aux)
    }

    /// Runs the protocol of `op` (Ready, this device in the committee), whose content
    /// matched the approved `request`.
    pub async fn run(
        &self,
        op: &Operation,
        request: Option<&ApprovalRequest>,
    ) -> Result<Submission, RunFailure> {
        if op.kind == "Presign" {
            // Nothing is signed: no approval; the signature that uses it is approved.
            return self.presign(op).await;
        }
        let request = request.ok_or_else(|| RunFailure::new("no approved request"))?;
        match &request.operation {
            Requested::CreateVault => self.keygen(op, request.vault.curve).await,
            Requested::Sign {
                payload,
                derivation_path,
            } => {
                let input = approval_request::signing_input(op, payload).map_err(|e| RunFailure::new(e.0))?;
                self.sign(
                    op,
                    request.vault.curve,
                    payload,
                    &input,
                    derivation_path.as_deref(),
                )
                .await
            }
            Requested::Reshare { .. } => self.reshare(op, request.vault.curve).await,
        }
    }

    /// A signing committee in party order with each member's share index, checked against
    /// the vault's signer set.
    fn signing_committee(&self, op: &Operation) -> Result<(Committee, Vec<u16>), RunFailure> {
        let committee = Committee::new(op, self.me())?;
        let signers: Vec<u16> = committee
            .members
            .iter()
            .map(|m| m.index.or(m.old_index))
            .collect::<Option<_>>()
            .ok_or_else(|| RunFailure::new("a signing committee member has no share index"))?;
        for (m, s) in committee.members.iter().zip(&signers) {
            let listed = op.vault.signers.iter().find(|v| v.device_id == m.device_id);
            if listed.map(|v| v.index) != Some(*s) {
                return Err(RunFailure::new(format!(
                    "committee member {} is not signer {s} of the vault",
                    m.device_id
                )));
            }
        }
        if signers.len() != usize::from(op.vault.threshold) {
            return Err(RunFailure::new(
                "the committee is not the vault's threshold of signers",
            ));
        }
        Ok((committee, signers))
    }

    /// Generates a presignature with the committee and keeps it for one signature.
    async fn presign(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .presign
            .as_ref()
            .ok_or_else(|| RunFailure::new("presign without details"))?;
        if op.curve != "secp256k1" || op.vault.status != "Active" {
            return Err(RunFailure::new("presignatures are for Active secp256k1 vaults"));
        }
        if details.key_generation != op.vault.key_generation {
            return Err(RunFailure::new(
                "the presignature is for a key generation the vault no longer has",
            ));
        }
        let (committee, signers) = self.signing_committee(op)?;
        let i = committee.me;
        let share = ecdsa_share(&self.load_share(&op.vault_id, details.key_generation).await?)?;
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        let presignature = self
            .session(
                ProtocolTag::EcdsaPresign,
                op,
                &members,
                Some(Protocol::EcdsaPresign),
                |party, eid| {
                    let (share, signers) = (&share, &signers);
                    async move { ecdsa::presign(party, eid, i, signers, share, &mut OsRng).await }
                },
            )
            .await?;
        let fingerprint = hex::encode(presignature.public().fingerprint());
        let bytes = presignature
            .to_bytes()
            .map_err(|e| RunFailure::new(format!("presignature: {e}")))?;
        let id = RecordId::presignature(self.me(), &op.vault_id, &op.id)
            .map_err(|e| RunFailure::new(e.to_string()))?;
        self.keystore
            .put(&id, &bytes)
            .await
            .map_err(|e| RunFailure::new(format!("cannot store the presignature: {e}")))?;
        Ok(Submission::Presign { fingerprint })
    }

    /// The one-round signature with presignature `presignature_id`: it is taken out of the
    /// keystore (deleted) before its partial signature leaves the device.
    async fn sign_with_presignature(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
        signers: &[u16],
        presignature_id: &str,
        payload: &SignPayload,
        digest: &[u8; 32],
    ) -> Result<Submission, RunFailure> {
        let preimage =
            match payload {
                SignPayload::EthereumTransaction(tx) => Preimage {
                    hash: HashAlgorithm::Keccak256,
                    data: tx.raw().to_vec(),
                },
                SignPayload::Message(m) => Preimage {
                    hash: HashAlgorithm::Keccak256,
                    data: approval_request::eip191_prefixed(m),
                },
                SignPayload::Digest(_) => return Err(RunFailure::new(
                    "a presignature cannot sign a raw digest (CGGMP24 signs only messages it hashes itself)",
                )),
            };
        if &preimage.digest() != digest {
            return Err(RunFailure::new(
                "the presigned message does not hash to the approved digest",
            ));
        }
        let id = RecordId::presignature(self.me(), &op.vault_id, presignature_id)
            .map_err(|e| RunFailure::new(e.to_string()))?;
        let bytes = self
            .keystore
            .take(&id)
            .await
            .map_err(|e| RunFailure::new(format!("keystore: {e}")))?
            .ok_or_else(|| {
                RunFailure::new(format!(
                    "this device holds no presignature {presignature_id} (used or lost)"
                ))
            })?;
        let presignature = ecdsa::Presignature::<Secp256k1>::from_bytes(&bytes)
            .map_err(|e| RunFailure::new(format!("stored presignature: {e}")))?;
        if presignature.public().signers != signers {
            return Err(RunFailure::new("the presignature belongs to another committee"));
        }
        let vault_key = op.vault.public_key.as_deref().unwrap_or_default();
        if hex::encode(presignature.public().public_key.to_bytes(true)) != vault_key {
            return Err(RunFailure::new(
                "the presignature is for another key (an older key generation?)",
            ));
        }
        let sig = self
            .session(
                ProtocolTag::EcdsaSign,
                op,
                members,
                Some(Protocol::EcdsaSign),
                |party, eid| {
                    let preimage = &preimage;
                    async move { ecdsa::sign_with_presignature(party, eid, presignature, preimage).await }
                },
            )
            .await?;
        Ok(Submission::Signature {
            signature: hex::encode(sig.to_bytes()),
            recovery_id: Some(sig.recovery_id),
        })
    }

    async fn keygen(&self, op: &Operation, curve: Curve) -> Result<Submission, RunFailure> {
        let details = op
            .keygen
            .as_ref()
            .ok_or_else(|| RunFailure::new("keygen without details"))?;
        let committee = Committee::new(op, self.me())?;
        // Party p must be the signer of index p.
        let order: Vec<&str> = details.signers.iter().map(|s| s.device_id.as_str()).collect();
        if committee.ids() != order {
            return Err(RunFailure::new(
                "the keygen committee is not the vault's signer set in index order",
            ));
        }
        let n = committee.members.len() as u16;
        let t = details.threshold;
        let (i, generation) = (committee.me, op.vault.key_generation);
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        match curve {
            Curve::Secp256k1 => {
                // Agree on aux-info first: a device set that has it already needs no primes;
                // otherwise take them before the keygen (a device without them must not start).
                let reused = self.agree_on_aux_info(op, &members, i).await?;
                let primes = match reused {
                    Some(_) => None,
                    None => Some(self.take_primes().await?),
                };
                let core = match self
                    .session(
                        ProtocolTag::EcdsaKeygen,
                        op,
                        &members,
                        Some(Protocol::EcdsaKeygen),
                        |party, eid| async move {
                            ecdsa::keygen::<Secp256k1, _, _>(party, eid, i, n, t, &mut OsRng).await
                        },
                    )
                    .await
                {
                    Ok(core) => core,
                    Err(e) => {
                        // The primes were never used in a message: they go back.
                        self.put_back(primes).await;
                        return Err(e);
                    }
                };
                let aux = match (reused, primes) {
                    (Some(aux), _) => aux,
                    (None, Some(primes)) => self.fresh_aux_info(op, &members, i, primes).await?,
                    (None, None) => return Err(RunFailure::new("no prime set for aux-info")),
                };
                let info = core
                    .key_info()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                let bytes = ecdsa_record(&core, &aux)?;
                self.store_share(&op.vault_id, generation, &bytes).await?;
                Ok(Submission::Keygen {
                    public_key: hex::encode(core.public_key_bytes()),
                    chain_code: core.chain_code().map(hex::encode),
                    key_set_hash: key_set_hash(&info),
                    generation,
                })
            }
            Curve::Ed25519 => {
                let share = self
                    .session(
                        ProtocolTag::SchnorrKeygen,
                        op,
                        &members,
                        Some(Protocol::FrostKeygen),
                        |party, eid| async move {
                            schnorr::keygen::<Ed25519, _, _>(party, eid, i, n, t, &mut OsRng).await
                        },
                    )
                    .await?;
                let info = share
                    .key_info()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                let bytes = share
                    .to_bytes()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                let public_key = share
                    .public_key_bytes()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                self.store_share(&op.vault_id, generation, &bytes).await?;
                Ok(Submission::Keygen {
                    public_key: hex::encode(public_key),
                    chain_code: None,
                    key_set_hash: key_set_hash(&info),
                    generation,
                })
            }
        }
    }

    async fn sign(
        &self,
        op: &Operation,
        curve: Curve,
        payload: &SignPayload,
        input: &SigningInput,
        path: Option<&str>,
    ) -> Result<Submission, RunFailure> {
        let details = op
            .sign
            .as_ref()
            .ok_or_else(|| RunFailure::new("sign without details"))?;
        let (committee, signers) = self.signing_committee(op)?;
        let i = committee.me;
        let bytes = self.load_share(&op.vault_id, details.key_generation).await?;
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        match curve {
            Curve::Secp256k1 => {
                let SigningInput::Digest(digest) = input else {
                    return Err(RunFailure::new("secp256k1 signs a 32-byte digest"));
                };
                if let Some(presignature_id) = &details.presignature_id {
                    if path.is_some() {
                        return Err(RunFailure::new("a presignature signs at the root key only"));
                    }
                    return self
                        .sign_with_presignature(op, &members, &signers, presignature_id, payload, digest)
                        .await;
                }
                let share = ecdsa_share(&bytes)?;
                let path: Option<DerivationPath> = path
                    .map(|p| p.parse())
                    .transpose()
                    .map_err(|e: vsigner_tss::Error| RunFailure::new(format!("derivation path: {e}")))?;
                let message = Message::Digest(*digest);
                let sig = self
                    .session(
                        ProtocolTag::EcdsaSign,
                        op,
                        &members,
                        Some(Protocol::EcdsaSign),
                        |party, eid| {
                            let (share, message, path, signers) = (&share, &message, path.as_ref(), &signers);
                            async move {
                                ecdsa::sign(party, eid, i, signers, share, message, path, &mut OsRng).await
                            }
                        },
                    )
                    .await?;
                Ok(Submission::Signature {
                    signature: hex::encode(sig.to_bytes()),
                    recovery_id: Some(sig.recovery_id),
                })
            }
            Curve::Ed25519 => {
                if path.is_some() {
                    return Err(RunFailure::new("derivation paths are not supported on ed25519"));
                }
                let share = schnorr::KeyShare::<Ed25519>::from_bytes(&bytes)
                    .map_err(|e| RunFailure::new(format!("stored share: {e}")))?;
                let message = input.bytes().to_vec();
                let sig = self
                    .session(
                        ProtocolTag::SchnorrSign,
                        op,
                        &members,
                        Some(Protocol::FrostSign),
                        |party, eid| {
                            let (share, message, signers) = (&share, &message, &signers);
                            async move {
                                schnorr::sign(party, eid, i, signers, share, message, None, &mut OsRng).await
                            }
                        },
                    )
                    .await?;
                Ok(Submission::Signature {
                    signature: hex::encode(&sig.0),
                    recovery_id: None,
                })
            }
        }
    }

    async fn reshare(&self, op: &Operation, curve: Curve) -> Result<Submission, RunFailure> {
        let details = op
            .reshare
            .as_ref()
            .ok_or_else(|| RunFailure::new("reshare without details"))?;
        let committee = Committee::new(op, self.me())?;
        let mut roles = Vec::with_capacity(committee.members.len());
        for m in &committee.members {
            let old = m.old_index.map(|k| (k, details.old_signers.get(usize::from(k))));
            let new = m.new_index.map(|k| (k, details.new_signers.get(usize::from(k))));
            for (k, listed) in [old, new].into_iter().flatten() {
                if listed.map(|s| s.device_id.as_str()) != Some(m.device_id.as_str()) {
                    return Err(RunFailure::new(format!(
                        "committee member {} does not hold index {k} in the signer sets",
                        m.device_id
                    )));
                }
            }
            roles.push(Role {
                old_index: m.old_index,
                new_index: m.new_index,
            });
        }
        let me = &committee.members[usize::from(committee.me)];
        let new_generation = details.old_key_generation + 1;
        let public_key_hex = op
            .vault
            .public_key
            .as_deref()
            .ok_or_else(|| RunFailure::new("the vault has no public key"))?;
        let public_key_bytes =
            hex::decode(public_key_hex).map_err(|_| RunFailure::new("vault public key is not hex"))?;
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        // The new set in new-index order, for aux-info.
        let new_set: Vec<&CommitteeMember> = {
            let mut v: Vec<&CommitteeMember> = committee
                .members
                .iter()
                .filter(|m| m.new_index.is_some())
                .collect();
            v.sort_by_key(|m| m.new_index);
            v
        };
        let old = match me.old_index {
            Some(_) => Some(self.load_share(&op.vault_id, details.old_key_generation).await?),
            None => None,
        };
        let party_me = committee.me;
        match curve {
            Curve::Secp256k1 => {
                let public_key = Point::<Secp256k1>::from_bytes(&public_key_bytes)
                    .map_err(|_| RunFailure::new("vault public key is not a secp256k1 point"))?;
                let old_core = old.map(|b| ecdsa_core(&b)).transpose()?;
                // New members agree on aux-info for the new set first (and take primes if
                // they must generate it); old-only members go straight to the reshare.
                let (reused, primes) = match me.new_index {
                    Some(k) => {
                        let reused = self.agree_on_aux_info(op, &new_set, k).await?;
                        let primes = match reused {
                            Some(_) => None,
                            None => Some(self.take_primes().await?),
                        };
                        (reused, primes)
                    }
                    None => (None, None),
                };
                let setup = ReshareSetup {
                    roles: &roles,
                    me: party_me,
                    old_threshold: details.old_threshold,
                    new_threshold: details.new_threshold,
                    public_key,
                };
                let reshared = self
                    .session(
                        ProtocolTag::Reshare,
                        op,
                        &members,
                        Some(Protocol::EcdsaReshare),
                        |party, eid| {
                            let (setup, old_core) = (&setup, old_core.as_ref());
                            async move { ecdsa::reshare(party, eid, setup, old_core, &mut OsRng).await }
                        },
                    )
                    .await;
                let reshared = match reshared {
                    Ok(r) => r,
                    Err(e) => {
                        self.put_back(primes).await;
                        return Err(e);
                    }
                };
                let (Some(core), Some(new_index)) = (reshared.share, me.new_index) else {
                    self.put_back(primes).await;
                    return Ok(Submission::Departed {
                        generation: new_generation,
                    });
                };
                let aux = match (reused, primes) {
                    (Some(aux), _) => aux,
                    (None, Some(primes)) => self.fresh_aux_info(op, &new_set, new_index, primes).await?,
                    (None, None) => return Err(RunFailure::new("no prime set for aux-info")),
                };
                let info = core
                    .key_info()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                let bytes = ecdsa_record(&core, &aux)?;
                self.store_share(&op.vault_id, new_generation, &bytes).await?;
                Ok(Submission::Reshare {
                    public_key: hex::encode(core.public_key_bytes()),
                    key_set_hash: key_set_hash(&info),
                    generation: new_generation,
                })
            }
            Curve::Ed25519 => {
                let public_key = Point::<generic_ec::curves::Ed25519>::from_bytes(&public_key_bytes)
                    .map_err(|_| RunFailure::new("vault public key is not an ed25519 point"))?;
                let old_share = old
                    .map(|b| schnorr::KeyShare::<Ed25519>::from_bytes(&b))
                    .transpose()
                    .map_err(|e| RunFailure::new(format!("stored share: {e}")))?;
                let setup = ReshareSetup {
                    roles: &roles,
                    me: party_me,
                    old_threshold: details.old_threshold,
                    new_threshold: details.new_threshold,
                    public_key,
                };
                let reshared = self
                    .session(
                        ProtocolTag::Reshare,
                        op,
                        &members,
                        Some(Protocol::FrostReshare),
                        |party, eid| {
                            let (setup, old_share) = (&setup, old_share.as_ref());
                            async move { schnorr::reshare(party, eid, setup, old_share, &mut OsRng).await }
                        },
                    )
                    .await?;
                let Some(share) = reshared.share else {
                    return Ok(Submission::Departed {
                        generation: new_generation,
                    });
                };
                let info = share
                    .key_info()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                let bytes = share
                    .to_bytes()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                let public_key = share
                    .public_key_bytes()
                    .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
                self.store_share(&op.vault_id, new_generation, &bytes).await?;
                Ok(Submission::Reshare {
                    public_key: hex::encode(public_key),
                    key_set_hash: key_set_hash(&info),
                    generation: new_generation,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../test-data")
                .join(path),
        )
        .unwrap()
    }

    #[test]
    fn ecdsa_records_hold_core_share_and_aux_info() {
        let core =
            ecdsa::CoreShare::<Secp256k1>::from_bytes(&fixture("key-shares/secp256k1-2of3/party-1.vsgn"))
                .unwrap();
        let aux = ecdsa::AuxInfo::from_bytes(&fixture("aux-info/n3/party-1.vsgn")).unwrap();
        let record = ecdsa_record(&core, &aux).unwrap();
        let share = ecdsa_share(&record).unwrap();
        assert_eq!(share.index(), 1);
        assert_eq!(share.public_key_bytes(), core.public_key_bytes());
        assert_eq!(
            ecdsa_core(&record).unwrap().public_key_bytes(),
            core.public_key_bytes()
        );
        for cut in [0, 3, 7, 8, 100, record.len() - 1] {
            assert!(ecdsa_share(&record[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn key_set_hash_is_sha256_of_the_compressed_public_shares_in_index_order() {
        let core =
            ecdsa::CoreShare::<Secp256k1>::from_bytes(&fixture("key-shares/secp256k1-2of3/party-0.vsgn"))
                .unwrap();
        let mut concatenated = Vec::new();
        for j in 0..3 {
            let p = core.public_share(j).unwrap();
            concatenated.extend_from_slice(&p.to_bytes(true));
        }
        assert_eq!(concatenated.len(), 3 * 33);
        let expected = hex::encode(Sha256::digest(&concatenated));
        assert_eq!(key_set_hash(&core.key_info().unwrap()), expected);
        // Every holder computes the same hash.
        let other =
            ecdsa::CoreShare::<Secp256k1>::from_bytes(&fixture("key-shares/secp256k1-2of3/party-2.vsgn"))
                .unwrap();
        assert_eq!(key_set_hash(&other.key_info().unwrap()), expected);
        let ed = schnorr::KeyShare::<Ed25519>::from_bytes(&fixture("key-shares/ed25519-2of3/party-0.vsgn"))
            .unwrap();
        let info = ed.key_info().unwrap();
        assert!(info.public_shares.iter().all(|p| p.to_bytes(true).len() == 32));
        assert_eq!(key_set_hash(&info).len(), 64);
    }

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
        let mut short = op.clone();
        short.nonce = "ab".repeat(8);
        assert!(execution_id(ProtocolTag::EcdsaSign, &short, &["x", "y"]).is_err());
        let mut bad = op;
        bad.nonce = "zz".into();
        assert!(execution_id(ProtocolTag::EcdsaSign, &bad, &["x", "y"]).is_err());
    }
}
