//! Full threshold ECDSA signing (CGGMP24, 3 presigning rounds + 1 online round).

use cggmp24::generic_ec::coords::AlwaysHasAffineX;
use cggmp24::generic_ec::{Curve, NonZero, Point, Scalar};
use cggmp24::hd_wallet::{HdWallet, Slip10};
use cggmp24::PrehashedDataToSign;
use rand_core::{CryptoRng, RngCore};
use round_based::Mpc;

use super::{EcdsaCurve, KeyShare, Message};
use crate::hd::DerivationPath;
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, PartyIndex, WireMessage};

/// Rounds of `cggmp24::signing::msg::Msg`: 1a, 1b, 2, 3, 4, reliability check.
pub(crate) const SIGNING_ROUNDS: &[round_based::MessageType] =
    &[wire::B, wire::P, wire::P, wire::B, wire::B, wire::B];

/// An ECDSA signature, normalised to low-s, with the recovery id Ethereum needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    /// `r`, 32 bytes big endian.
    pub r: [u8; 32],
    /// `s`, 32 bytes big endian, `s ≤ n/2`.
    pub s: [u8; 32],
    /// Parity of `R.y` (0 or 1): with `r`, `s` and the digest, recovers the public key.
    pub recovery_id: u8,
}

impl Signature {
    /// `r ‖ s`.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    /// Normalises a library signature, checks it against `public_key` and computes the
    /// recovery id. Never returns an unverified signature.
    pub(crate) fn finish<E: Curve>(
        sig: cggmp24::Signature<E>,
        public_key: &Point<E>,
        digest: &Scalar<E>,
    ) -> Result<Self, Error>
    where
        NonZero<Point<E>>: AlwaysHasAffineX<E>,
    {
        let sig = sig.normalize_s();
        sig.verify(public_key, &PrehashedDataToSign::from_scalar(*digest))
            .map_err(|_| Error::Protocol("the combined signature does not verify".into()))?;
        let (r, s) = (*sig.r, *sig.s);
        let recovery_id = recovery_id(&r, &s, digest, public_key)
            .ok_or_else(|| Error::Protocol("cannot compute the recovery id".into()))?;
        Ok(Signature {
            r: scalar_bytes(&r)?,
            s: scalar_bytes(&s)?,
            recovery_id,
        })
    }
}

fn scalar_bytes<E: Curve>(s: &Scalar<E>) -> Result<[u8; 32], Error> {
    s.to_be_bytes()
        .as_bytes()
        .try_into()
        .map_err(|_| Error::Protocol("scalar is not 32 bytes".into()))
}

/// Finds `v` such that `R = (r, parity v)` satisfies `Q = r⁻¹(s·R − z·G)`.
fn recovery_id<E: Curve>(r: &Scalar<E>, s: &Scalar<E>, z: &Scalar<E>, public_key: &Point<E>) -> Option<u8> {
    let r_inv = r.invert()?;
    (0u8..2).find(|v| {
        let mut encoded = vec![0x02 | v];
        encoded.extend_from_slice(r.to_be_bytes().as_bytes());
        Point::<E>::from_bytes(&encoded)
            .map(|big_r| (big_r * s - Point::generator() * z) * r_inv == *public_key)
            .unwrap_or(false)
    })
}

/// Checks a signing committee: `signers[j]` is the keygen index of committee member `j`.
pub(crate) fn check_committee<E: EcdsaCurve>(
    share: &KeyShare<E>,
    i: PartyIndex,
    signers: &[PartyIndex],
) -> Result<u16, Error> {
    let t = share.threshold();
    if signers.len() != usize::from(t) {
        return Err(Error::invalid_args(format!(
            "exactly {t} signers are needed, {} given",
            signers.len()
        )));
    }
    if i >= t {
        return Err(Error::invalid_args(format!(
            "committee index {i} is not below {t}"
        )));
    }
    if signers.get(usize::from(i)) != Some(&share.index()) {
        return Err(Error::invalid_args(format!(
            "committee member {i} is keygen party {:?}, but this share is party {}",
            signers.get(usize::from(i)),
            share.index()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in signers {
        if *s >= share.n() || !seen.insert(*s) {
            return Err(Error::invalid_args(format!(
                "invalid or repeated signer index {s}"
            )));
        }
    }
    Ok(t)
}

/// Signs `message` as member `i` of the committee `signers` (keygen indices, the same order
/// for every member), optionally with the child key at `path`.
#[allow(clippy::too_many_arguments)] // mirrors the protocol's inputs; a builder would add nothing
pub async fn sign<E, P, R>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    signers: &[PartyIndex],
    share: &KeyShare<E>,
    message: &Message,
    path: Option<&DerivationPath>,
    rng: &mut R,
) -> Result<Signature, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    Slip10: HdWallet<E>,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    let t = check_committee(share, i, signers)?;
    vsigner_memory::wipe_gmp_on_free();
    let public_key = match path {
        Some(path) => share.derive_public_key(path)?,
        None => share.public_key(),
    };
    let (party, faults) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n: t,
            kinds: SIGNING_ROUNDS,
        },
    );
    let mut builder = cggmp24::signing(eid.for_cggmp(), i, signers, share.inner());
    if let Some(path) = path {
        builder = builder
            .set_derivation_path(path.indices().iter().copied())
            .map_err(|e| Error::invalid_args(format!("derivation path: {e}")))?;
    }
    let digest = message.scalar::<E>();
    let signature = match message {
        Message::Digest(_) => {
            builder
                .sign(rng, party, &PrehashedDataToSign::from_scalar(digest))
                .await
        }
        Message::Preimage(p) => builder.sign(rng, party, &p.data_to_sign::<E>()).await,
    }
    .map_err(|e| faults.explain(Error::protocol(&e)))?;
    Signature::finish(signature, &public_key, &digest)
}
