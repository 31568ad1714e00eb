//! ECDSA presignatures (secp256k1 and P-256): a committee makes one in the background (nothing is signed, so
//! nothing is approved), each member keeps its part **in process memory only**
//! ([`Presignatures`]), and one later signature of an approved message takes it out and
//! signs in one round.
//!
//! A presignature used twice reveals the device's nonce share and then its key share, so
//! it must be impossible to bring one back. Anything written to storage can be brought back
//! (an older object version, a backup, a VM snapshot): a presignature is therefore never
//! written. A restart loses them all; the daemon tells the coordinator so at start
//! (`discardPresignatures`), and the pool is stocked again. docs/keystore.md has the
//! rollback analysis of every record kind.

use std::collections::HashMap;
use std::sync::Mutex;

use generic_ec::Point;
use rand_core::OsRng;
use vsigner_approval::SignPayload;
use vsigner_tss::ecdsa::{
    self, AlwaysHasAffineX, CurveKind, EcdsaCurve, HashAlgorithm, NonZero, Preimage, Secp256k1, Secp256r1,
};
use vsigner_tss::ProtocolTag;
use zeroize::Zeroizing;

use super::{ecdsa::share_of, share_set, Committee, RunContext, RunFailure, Submission};
use crate::approval_request;
use crate::coordinator_api::{CommitteeMember, Operation};
use crate::metrics::Protocol;

/// The presignatures of this process's devices, in memory only (zeroized when taken or
/// dropped).
#[derive(Default)]
pub struct Presignatures {
    held: Mutex<HashMap<(String, String), Held>>,
}

struct Held {
    vault: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Presignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Presignatures({} held)", self.count())
    }
}

impl Presignatures {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `device`'s part of presignature `id` (the presign operation) of `vault`.
    pub fn keep(&self, device: &str, vault: &str, id: &str, bytes: Zeroizing<Vec<u8>>) {
        self.held().insert(
            (device.to_owned(), id.to_owned()),
            Held {
                vault: vault.to_owned(),
                bytes,
            },
        );
    }

    /// Takes `device`'s part of presignature `id` of `vault` out: it can be taken once.
    pub fn take(&self, device: &str, vault: &str, id: &str) -> Option<Zeroizing<Vec<u8>>> {
        let mut held = self.held();
        let key = (device.to_owned(), id.to_owned());
        if held.get(&key)?.vault != vault {
            return None;
        }
        let taken = held.remove(&key).map(|h| h.bytes);
        drop(held);
        // The audit trail of nonces: each presignature appears here once per device.
        tracing::info!(
            device,
            vault,
            presignature = id,
            "presignature taken; it is gone from this device"
        );
        taken
    }

    /// Forgets every presignature of `device` for `vault` (its key generation was
    /// replaced); returns how many.
    pub fn forget_vault(&self, device: &str, vault: &str) -> usize {
        let mut held = self.held();
        let before = held.len();
        held.retain(|(d, _), h| !(d == device && h.vault == vault));
        before - held.len()
    }

    /// How many are held.
    pub fn count(&self) -> usize {
        self.held().len()
    }
}

impl RunContext {
    /// Generates a presignature with the committee and keeps it for one signature.
    pub(super) async fn presign(&self, op: &Operation) -> Result<Submission, RunFailure> {
        match op.curve.as_str() {
            "secp256k1" => self.presign_on::<Secp256k1>(op).await,
            "secp256r1" => self.presign_on::<Secp256r1>(op).await,
            other => Err(RunFailure::new(format!(
                "presignatures are for ECDSA vaults, not {other}"
            ))),
        }
    }

    async fn presign_on<E: EcdsaCurve>(&self, op: &Operation) -> Result<Submission, RunFailure>
    where
        NonZero<Point<E>>: AlwaysHasAffineX<E>,
    {
        let details = op
            .presign
            .as_ref()
            .ok_or_else(|| RunFailure::new("presign without details"))?;
        if op.vault.status != "Active" {
            return Err(RunFailure::new("presignatures are for Active vaults"));
        }
        if details.key_generation != op.vault.key_generation {
            return Err(RunFailure::new(
                "the presignature is for a key generation the vault no longer has",
            ));
        }
        let (committee, signers) = self.signing_committee(op)?;
        let record = self.load_share(&op.vault_id, details.key_generation).await?;
        let mut shares = std::collections::BTreeMap::new();
        for (p, part) in committee
            .mine
            .iter()
            .zip(self.my_shares(op, &committee, &signers, &record)?)
        {
            shares.insert(*p, share_of::<E>(part)?);
        }
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        let presignatures = self
            .session(
                ProtocolTag::EcdsaPresign,
                op,
                &members,
                Some(Protocol::EcdsaPresign),
                |party, eid, i| {
                    let (shares, signers) = (&shares, &signers);
                    async move {
                        let share = shares.get(&i).ok_or(vsigner_tss::Error::InvalidArguments(
                            "no share for this party".into(),
                        ))?;
                        ecdsa::presign(party, eid, i, signers, share, &mut OsRng).await
                    }
                },
            )
            .await?;
        let first = presignatures
            .first()
            .ok_or_else(|| RunFailure::new("the presign run gave no presignature"))?;
        let fingerprint = hex::encode(first.public().fingerprint());
        if presignatures
            .iter()
            .any(|p| hex::encode(p.public().fingerprint()) != fingerprint)
        {
            return Err(RunFailure::new(
                "this device's parties ended with different presignatures",
            ));
        }
        // One part per party of this device, in party order, kept as one entry.
        let parts = presignatures
            .iter()
            .map(|p| p.to_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RunFailure::new(format!("presignature: {e}")))?;
        self.presignatures
            .keep(self.me(), &op.vault_id, &op.id, share_set::encode(&parts)?);
        Ok(Submission::Presign { fingerprint })
    }

    /// The one-round signature with presignature `presignature_id`: it is taken out of
    /// this process's memory before its partial signature leaves the device; one this
    /// process does not hold (used, made before a restart, or never made) is refused.
    pub(super) async fn sign_with_presignature<E: EcdsaCurve>(
        &self,
        op: &Operation,
        committee: &Committee,
        signers: &[u16],
        presignature_id: &str,
        payload: &SignPayload,
        digest: &[u8; 32],
    ) -> Result<Vec<ecdsa::Signature>, RunFailure>
    where
        NonZero<Point<E>>: AlwaysHasAffineX<E>,
    {
        // The message as the curve's signatures hash it (the same hash the approved digest
        // was computed with, checked below).
        let preimage =
            match (E::KIND, payload) {
                (CurveKind::Secp256k1, SignPayload::EthereumTransaction(tx)) => Preimage {
                    hash: HashAlgorithm::Keccak256,
                    data: tx.raw().to_vec(),
                },
                (CurveKind::Secp256k1, SignPayload::Message(m)) => Preimage {
                    hash: HashAlgorithm::Keccak256,
                    data: approval_request::eip191_prefixed(m),
                },
                (CurveKind::P256, SignPayload::Message(m)) => Preimage {
                    hash: HashAlgorithm::Sha256,
                    data: m.clone(),
                },
                (_, SignPayload::Digest(_)) => return Err(RunFailure::new(
                    "a presignature cannot sign a raw digest (CGGMP24 signs only messages it hashes itself)",
                )),
                (kind, _) => {
                    return Err(RunFailure::new(format!(
                        "no presigned signature of this payload on {}",
                        kind.as_str()
                    )))
                }
            };
        if &preimage.digest() != digest {
            return Err(RunFailure::new(
                "the presigned message does not hash to the approved digest",
            ));
        }
        let bytes = self
            .presignatures
            .take(self.me(), &op.vault_id, presignature_id)
            .ok_or_else(|| {
                RunFailure::new(format!(
                    "device {} holds no presignature {presignature_id} (used, or made before this process started); refused",
                    self.me()
                ))
            })?;
        let parts = share_set::decode(&bytes)?;
        if parts.len() != committee.mine.len() {
            return Err(RunFailure::new("the presignature belongs to another committee"));
        }
        let vault_key = op.vault.public_key.as_deref().unwrap_or_default();
        let mut held = std::collections::BTreeMap::new();
        for (p, part) in committee.mine.iter().zip(parts) {
            let presignature = ecdsa::Presignature::<E>::from_bytes(part)
                .map_err(|e| RunFailure::new(format!("stored presignature: {e}")))?;
            if presignature.public().signers != signers || presignature.public().index != *p {
                return Err(RunFailure::new("the presignature belongs to another committee"));
            }
            if hex::encode(presignature.public().public_key.to_bytes(true)) != vault_key {
                return Err(RunFailure::new(
                    "the presignature is for another key (an older key generation?)",
                ));
            }
            held.insert(*p, presignature);
        }
        let held = Mutex::new(held);
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        self.session(
            ProtocolTag::EcdsaSign,
            op,
            &members,
            Some(Protocol::EcdsaSign),
            |party, eid, i| {
                let preimage = &preimage;
                // Each part is taken once, by its own party.
                let presignature = held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&i);
                async move {
                    let presignature = presignature.ok_or(vsigner_tss::Error::InvalidArguments(
                        "no presignature for this party".into(),
                    ))?;
                    ecdsa::sign_with_presignature(party, eid, presignature, preimage).await
                }
            },
        )
        .await
    }
}
