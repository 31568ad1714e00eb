//! Whole protocols among honest simulated parties, on `round_based::sim`.
//!
//! Each function runs every party in this thread and returns every party's output, in party
//! order, or the first party's error. `rng` makes one RNG per party.

use cggmp24::generic_ec::coords::AlwaysHasAffineX;
use cggmp24::generic_ec::{NonZero, Point};
use cggmp24::hd_wallet::{HdWallet, Slip10};
use rand_core::{CryptoRng, RngCore};

use crate::ecdsa::{
    self, AuxInfo, AuxInfoOptions, CoreShare, EcdsaCurve, KeyShare, Message, Preimage, Presignature,
};
use crate::hd::DerivationPath;
use crate::primes::PrimeSet;
use crate::schnorr::{self, SchnorrScheme, TaprootTweak};
use crate::{Error, ExecutionId, PartyIndex};

fn collect<T>(
    result: Result<round_based::sim::SimResult<Result<T, Error>>, round_based::sim::SimError>,
) -> Result<Vec<T>, Error> {
    result
        .map_err(|e| Error::Protocol(format!("simulation failed: {e}")))?
        .into_vec()
        .into_iter()
        .collect()
}

fn share_of<'a, T>(shares: &'a [T], signers: &[PartyIndex], j: u16) -> Result<&'a T, Error> {
    signers
        .get(usize::from(j))
        .and_then(|s| shares.get(usize::from(*s)))
        .ok_or_else(|| Error::invalid_args(format!("no share for committee member {j}")))
}

/// ECDSA keygen, `t`-of-`n`.
pub fn ecdsa_keygen<E, R>(
    eid: ExecutionId,
    n: u16,
    t: u16,
    rng: impl Fn() -> R,
) -> Result<Vec<CoreShare<E>>, Error>
where
    E: EcdsaCurve,
    R: RngCore + CryptoRng,
{
    collect(round_based::sim::run(n, |i, party| {
        let mut rng = rng();
        async move { ecdsa::keygen::<E, _, _>(party, eid, i, n, t, &mut rng).await }
    }))
}

/// Aux-info for a device set; party `i` uses `sets[i]`.
pub fn ecdsa_aux_info<R>(
    eid: ExecutionId,
    sets: Vec<PrimeSet>,
    options: AuxInfoOptions,
    rng: impl Fn() -> R,
) -> Result<Vec<AuxInfo>, Error>
where
    R: RngCore + CryptoRng,
{
    let n = sets.len() as u16;
    let mut sets: Vec<Option<PrimeSet>> = sets.into_iter().map(Some).collect();
    collect(round_based::sim::run(n, |i, party| {
        let set = sets.get_mut(usize::from(i)).and_then(Option::take);
        let mut rng = rng();
        async move {
            let set = set.ok_or_else(|| Error::invalid_args("missing prime set"))?;
            ecdsa::generate_aux_info(party, eid, i, n, set, options, &mut rng).await
        }
    }))
}

/// Joins core shares with the aux-info of the same set.
pub fn ecdsa_key_shares<E: EcdsaCurve>(
    cores: Vec<CoreShare<E>>,
    aux: Vec<AuxInfo>,
) -> Result<Vec<KeyShare<E>>, Error> {
    cores
        .into_iter()
        .zip(aux)
        .map(|(c, a)| KeyShare::from_parts(c, a))
        .collect()
}

/// Full ECDSA signing by `signers` (keygen indices).
pub fn ecdsa_sign<E, R>(
    eid: ExecutionId,
    shares: &[KeyShare<E>],
    signers: &[PartyIndex],
    message: &Message,
    path: Option<&DerivationPath>,
    rng: impl Fn() -> R,
) -> Result<Vec<ecdsa::Signature>, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    Slip10: HdWallet<E>,
    R: RngCore + CryptoRng,
{
    let t = signers.len() as u16;
    collect(round_based::sim::run(t, |j, party| {
        let share = share_of(shares, signers, j);
        let mut rng = rng();
        async move { ecdsa::sign(party, eid, j, signers, share?, message, path, &mut rng).await }
    }))
}

/// ECDSA presignatures for `signers` (keygen indices).
pub fn ecdsa_presign<E, R>(
    eid: ExecutionId,
    shares: &[KeyShare<E>],
    signers: &[PartyIndex],
    rng: impl Fn() -> R,
) -> Result<Vec<Presignature<E>>, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    R: RngCore + CryptoRng,
{
    let t = signers.len() as u16;
    collect(round_based::sim::run(t, |j, party| {
        let share = share_of(shares, signers, j);
        let mut rng = rng();
        async move { ecdsa::presign(party, eid, j, signers, share?, &mut rng).await }
    }))
}

/// The online round: each committee member signs `message` with its presignature.
pub fn ecdsa_sign_with_presignatures<E>(
    eid: ExecutionId,
    presignatures: Vec<Presignature<E>>,
    message: &Preimage,
) -> Result<Vec<ecdsa::Signature>, Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
{
    let t = presignatures.len() as u16;
    let mut presignatures: Vec<Option<Presignature<E>>> = presignatures.into_iter().map(Some).collect();
    collect(round_based::sim::run(t, |j, party| {
        let presignature = presignatures.get_mut(usize::from(j)).and_then(Option::take);
        async move {
            let presignature = presignature.ok_or_else(|| Error::invalid_args("missing presignature"))?;
            ecdsa::sign_with_presignature(party, eid, presignature, message).await
        }
    }))
}

/// FROST keygen, `t`-of-`n`.
pub fn schnorr_keygen<C, R>(
    eid: ExecutionId,
    n: u16,
    t: u16,
    rng: impl Fn() -> R,
) -> Result<Vec<schnorr::KeyShare<C>>, Error>
where
    C: SchnorrScheme,
    R: RngCore + CryptoRng,
{
    collect(round_based::sim::run(n, |i, party| {
        let mut rng = rng();
        async move { schnorr::keygen::<C, _, _>(party, eid, i, n, t, &mut rng).await }
    }))
}

/// FROST signing by `signers` (keygen indices).
pub fn schnorr_sign<C, R>(
    eid: ExecutionId,
    shares: &[schnorr::KeyShare<C>],
    signers: &[PartyIndex],
    message: &[u8],
    taproot: Option<&TaprootTweak>,
    rng: impl Fn() -> R,
) -> Result<Vec<schnorr::Signature>, Error>
where
    C: SchnorrScheme,
    R: RngCore + CryptoRng,
{
    let t = signers.len() as u16;
    collect(round_based::sim::run(t, |j, party| {
        let share = share_of(shares, signers, j);
        let mut rng = rng();
        async move { schnorr::sign(party, eid, j, signers, share?, message, taproot, &mut rng).await }
    }))
}

/// Reshare of ECDSA core shares; party `p` plays `roles[p]` and deals with
/// `old[roles[p].old_index]`. Returns each party's result in run order.
pub fn ecdsa_reshare<E, R>(
    eid: ExecutionId,
    old: &[CoreShare<E>],
    roles: &[crate::reshare::Role],
    new_threshold: u16,
    rng: impl Fn() -> R,
) -> Result<Vec<ecdsa::Reshared<CoreShare<E>, E>>, Error>
where
    E: EcdsaCurve,
    R: RngCore + CryptoRng,
{
    let first = old.first().ok_or_else(|| Error::invalid_args("no old shares"))?;
    let (public_key, old_threshold) = (first.public_key(), first.threshold());
    collect(round_based::sim::run(roles.len() as u16, |p, party| {
        let mut rng = rng();
        async move {
            let setup = crate::reshare::ReshareSetup {
                roles,
                me: p,
                old_n: old.len() as u16,
                old_threshold,
                new_threshold,
                public_key,
            };
            let mine = match roles.get(usize::from(p)).and_then(|r| r.old_index) {
                Some(i) => Some(
                    old.get(usize::from(i))
                        .ok_or_else(|| Error::invalid_args("no such old share"))?,
                ),
                None => None,
            };
            ecdsa::reshare(party, eid, &setup, mine, &mut rng).await
        }
    }))
}
