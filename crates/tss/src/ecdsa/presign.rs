//! Presignatures: the three expensive rounds ahead of time, one cheap round once the message
//! is known.
//!
//! A [`Presignature`] is used at most once: [`Presignature::issue_partial`] consumes it, and
//! the type is neither `Clone` nor `Copy`, so a second use does not compile:
//!
//! ```
//! # use vsigner_tss::ecdsa::{Presignature, Preimage, Secp256k1};
//! fn once(p: Presignature<Secp256k1>, m: &Preimage) {
//!     let _ = p.issue_partial(m); // fine: the presignature is consumed
//! }
//! ```
//! ```compile_fail,E0382
//! # use vsigner_tss::ecdsa::{Presignature, Preimage, Secp256k1};
//! fn twice(p: Presignature<Secp256k1>, m: &Preimage) {
//!     let _ = p.issue_partial(m);
//!     let _ = p.issue_partial(m); // error[E0382]: use of moved value
//! }
//! ```
//! Storage must keep the same promise: the keystore deletes a stored presignature before its
//! partial signature leaves the device. Presignatures sign only [`Preimage`]s of the root key
//! (CGGMP24 forbids them for raw hashes and HD paths).

use cggmp24::generic_ec::coords::AlwaysHasAffineX;
use cggmp24::generic_ec::{NonZero, Point, Scalar};
use cggmp24::signing::{PresignatureCommitment, PresignaturePublicData};
use rand_core::{CryptoRng, RngCore};
use round_based::rounds_router::{simple_store::RoundInput, RoundsRouter};
use round_based::{Mpc, MpcParty, Outgoing, ProtocolMessage};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::signing::{check_committee, Signature, SIGNING_ROUNDS};
use super::{EcdsaCurve, KeyShare, Preimage};
use crate::share::{self, Kind};
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, PartyIndex, WireMessage};

/// This device's part of a presignature for one committee of one key.
///
/// # Security
/// Holds the secret nonce shares `k̃_i, χ̃_i` (zeroized on drop). Signing two messages with
/// the same presignature reveals the key share: it is consumed by use, and `Debug` shows
/// only public data.
pub struct Presignature<E: EcdsaCurve> {
    secret: cggmp24::Presignature<E>,
    public: PresignaturePublic<E>,
}

/// The public data every committee member gets with its presignature; needed to combine
/// and check partial signatures.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PresignaturePublic<E: EcdsaCurve> {
    gamma: NonZero<Point<E>>,
    commitments: Vec<(Point<E>, Point<E>)>,
    /// Committee (keygen indices) the presignature was made by.
    pub signers: Vec<PartyIndex>,
    /// This member's index in the committee.
    pub index: PartyIndex,
    /// The key it signs for.
    pub public_key: Point<E>,
}

/// One committee member's share of a signature made from a presignature. Not secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PartialSignature<E: EcdsaCurve> {
    /// Committee index of the member that issued it.
    pub index: PartyIndex,
    sigma: Scalar<E>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct StoredPresignature<E: EcdsaCurve> {
    secret: cggmp24::Presignature<E>,
    public: PresignaturePublic<E>,
}

impl<E: EcdsaCurve> PresignaturePublic<E> {
    /// SHA-256 over the public data every committee member of one presign run holds alike
    /// (the combined nonce point Γ, every member's commitments, the committee and the key),
    /// for members to show each other (through a coordinator) that they hold the same
    /// presignature. Nothing secret enters it.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"vsigner/presignature-fingerprint/v1");
        h.update(self.gamma.to_bytes(true));
        for (d, s) in &self.commitments {
            h.update(d.to_bytes(true));
            h.update(s.to_bytes(true));
        }
        for signer in &self.signers {
            h.update(signer.to_be_bytes());
        }
        h.update(self.public_key.to_bytes(true));
        h.finalize().into()
    }

    fn library(&self) -> PresignaturePublicData<E> {
        PresignaturePublicData {
            Gamma: self.gamma,
            commitments: self
                .commitments
                .iter()
                .map(|(d, s)| PresignatureCommitment {
                    tilde_Delta: *d,
                    tilde_S: *s,
                })
                .collect(),
        }
    }
}

impl<E: EcdsaCurve> Presignature<E>
where
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
{
    /// Issues this member's partial signature of `message`, consuming the presignature.
    pub fn issue_partial(self, message: &Preimage) -> (PartialSignature<E>, PresignaturePublic<E>) {
        let index = self.public.index;
        let partial = self.secret.issue_partial_signature(message.data_to_sign::<E>());
        (
            PartialSignature {
                index,
                sigma: partial.sigma,
            },
            self.public,
        )
    }

    /// Public data of this presignature (committee, key, commitments).
    pub fn public(&self) -> &PresignaturePublic<E> {
        &self.public
    }

    /// Serializes for the keystore (which must delete it before it is used).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let stored = StoredPresignature {
            secret: self.secret.clone(),
            public: self.public.clone(),
        };
        share::encode(Kind::EcdsaPresignature(E::KIND), &stored)
    }

    /// Parses bytes made by [`Presignature::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let stored: StoredPresignature<E> = share::decode(Kind::EcdsaPresignature(E::KIND), bytes)?;
        Ok(Presignature {
            secret: stored.secret,
            public: stored.public,
        })
    }
}

impl<E: EcdsaCurve> std::fmt::Debug for Presignature<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presignature")
            .field("curve", &E::KIND)
            .field("signers", &self.public.signers)
            .field("index", &self.public.index)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Generates a presignature as member `i` of the committee `signers` (keygen indices).
pub async fn presign<E, P, R>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    signers: &[PartyIndex],
    share: &KeyShare<E>,
    rng: &mut R,
) -> Result<Presignature<E>, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    let t = check_committee(share, i, signers)?;
    vsigner_memory::wipe_gmp_on_free();
    let (party, faults) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n: t,
            kinds: SIGNING_ROUNDS,
        },
    );
    let (secret, public) = cggmp24::signing(eid.for_cggmp(), i, signers, share.inner())
        .generate_presignature(rng, party)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let public = PresignaturePublic {
        gamma: public.Gamma,
        commitments: public
            .commitments
            .iter()
            .map(|c| (c.tilde_Delta, c.tilde_S))
            .collect(),
        signers: signers.to_vec(),
        index: i,
        public_key: share.public_key(),
    };
    Ok(Presignature { secret, public })
}

/// Combines the committee's partial signatures (any order) into a verified signature,
/// naming the members whose partial signature is invalid.
pub fn combine<E>(
    partials: &[PartialSignature<E>],
    public: &PresignaturePublic<E>,
    message: &Preimage,
) -> Result<Signature, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
{
    let t = public.signers.len();
    let mut ordered: Vec<Option<&PartialSignature<E>>> = vec![None; t];
    for p in partials {
        match ordered.get_mut(usize::from(p.index)) {
            Some(slot @ None) => *slot = Some(p),
            _ => {
                return Err(Error::Aborted {
                    culprits: vec![p.index],
                    reason: "unknown or repeated partial signature index".into(),
                })
            }
        }
    }
    let missing: Vec<PartyIndex> = (0..t as u16)
        .filter(|j| ordered.get(usize::from(*j)).is_some_and(Option::is_none))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid_args(format!(
            "partial signatures missing from {missing:?}"
        )));
    }
    let data = message.data_to_sign::<E>();
    let m = data.to_scalar();
    let library_partials: Vec<cggmp24::PartialSignature<E>> = ordered
        .iter()
        .flatten()
        .map(|p| cggmp24::PartialSignature { sigma: p.sigma })
        .collect();
    // `combine` checks every partial against the presignature's commitments; only when it
    // refuses do we repeat its check per member, to name the culprits.
    let Some(signature) = cggmp24::PartialSignature::combine(&library_partials, &public.library(), data)
    else {
        let gamma: Point<E> = *public.gamma;
        let r = public.gamma.x().to_scalar();
        let culprits: Vec<PartyIndex> = ordered
            .iter()
            .zip(&public.commitments)
            .filter_map(|(p, (delta, s))| {
                let p = (*p)?;
                (p.sigma * gamma != m * delta + r * s).then_some(p.index)
            })
            .collect();
        return Err(if culprits.is_empty() {
            Error::Protocol("partial signatures do not combine".into())
        } else {
            Error::Aborted {
                culprits,
                reason: "partial signature does not verify".into(),
            }
        });
    };
    Signature::finish(signature, &public.public_key, &m)
}

/// The online round as a protocol: every member broadcasts its partial signature and
/// combines everyone's into the signature.
#[derive(Clone, Serialize, Deserialize, ProtocolMessage)]
#[serde(bound = "")]
enum OnlineMsg<E: EcdsaCurve> {
    Partial(PartialSignature<E>),
}

/// Signs `message` with a presignature in one broadcast round.
pub async fn sign_with_presignature<E, P>(
    party: P,
    eid: ExecutionId,
    presignature: Presignature<E>,
    message: &Preimage,
) -> Result<Signature, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    P: Mpc<ProtocolMessage = WireMessage>,
{
    use futures::SinkExt;

    let i = presignature.public.index;
    let t = presignature.public.signers.len() as u16;
    let (party, faults): (wire::CheckedParty<OnlineMsg<E>, P>, _) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n: t,
            kinds: &[wire::B],
        },
    );
    let MpcParty { delivery, .. } = party;
    let (incoming, mut outgoing) = round_based::Delivery::split(delivery);
    let mut router = RoundsRouter::<OnlineMsg<E>>::builder();
    let round = router.add_round(RoundInput::<PartialSignature<E>>::broadcast(i, t));
    let mut router = router.listen(incoming);

    let (mine, public) = presignature.issue_partial(message);
    outgoing
        .send(Outgoing::broadcast(OnlineMsg::Partial(mine)))
        .await
        .map_err(|e| faults.explain(Error::Transport(e.to_string())))?;
    let received = router
        .complete(round)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut partials: Vec<PartialSignature<E>> = Vec::with_capacity(usize::from(t));
    for (sender, _, p) in received.into_iter_indexed() {
        if p.index != sender {
            return Err(faults.blame(
                sender,
                crate::Fault::Garbled("partial signature carries another index".into()),
            ));
        }
        partials.push(p);
    }
    partials.push(mine);
    combine(&partials, &public, message)
}
