//! The same protocols on the libraries alone: `cggmp24` on `round_based::sim` with its own
//! message types (no [`crate::wire`] checks or encoding), and the `frost` functions called
//! directly, every message passed through frost's own `serialize`/`deserialize` as any
//! networked use must (deserializing validates points, e.g. ed25519's torsion check, which
//! is most of a FROST message's cost). Only for measuring the engine's overhead.

use std::collections::BTreeMap;

use cggmp24::generic_ec::coords::AlwaysHasAffineX;
use cggmp24::generic_ec::{NonZero, Point};
use frost_core::keys::dkg;
use frost_core::{Identifier, SigningPackage};
use rand_core::{CryptoRng, RngCore};

use crate::ecdsa::{EcdsaCurve, KeyShare, SecurityLevel};
use crate::schnorr::{self, SchnorrScheme};
use crate::{Error, ExecutionId, PartyIndex};

fn sim_error(e: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("simulation failed: {e}"))
}

/// `cggmp24::keygen` on the simulator.
pub fn ecdsa_keygen<E, R>(eid: ExecutionId, n: u16, t: u16, rng: impl Fn() -> R) -> Result<(), Error>
where
    E: EcdsaCurve,
    R: RngCore + CryptoRng,
{
    let results = round_based::sim::run(n, |i, party| {
        let mut rng = rng();
        async move {
            cggmp24::keygen::<E>(eid.for_cggmp(), i, n)
                .set_threshold(t)
                .hd_wallet(true)
                .start(&mut rng, party)
                .await
        }
    })
    .map_err(sim_error)?;
    for r in results.into_vec() {
        r.map_err(|e| Error::protocol(&e))?;
    }
    Ok(())
}

/// `cggmp24::signing(..).sign` of a prehashed digest on the simulator.
pub fn ecdsa_sign<E, R>(
    eid: ExecutionId,
    shares: &[KeyShare<E>],
    signers: &[PartyIndex],
    digest: [u8; 32],
    rng: impl Fn() -> R,
) -> Result<(), Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    R: RngCore + CryptoRng,
{
    ecdsa_signing(eid, shares, signers, Some(digest), rng)
}

/// `cggmp24::signing(..).generate_presignature` on the simulator.
pub fn ecdsa_presign<E, R>(
    eid: ExecutionId,
    shares: &[KeyShare<E>],
    signers: &[PartyIndex],
    rng: impl Fn() -> R,
) -> Result<(), Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    R: RngCore + CryptoRng,
{
    ecdsa_signing(eid, shares, signers, None, rng)
}

/// Full signing of `digest`, or presigning when `digest` is `None`.
fn ecdsa_signing<E, R>(
    eid: ExecutionId,
    shares: &[KeyShare<E>],
    signers: &[PartyIndex],
    digest: Option<[u8; 32]>,
    rng: impl Fn() -> R,
) -> Result<(), Error>
where
    E: EcdsaCurve,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
    R: RngCore + CryptoRng,
{
    let data = digest.map(|d| {
        cggmp24::PrehashedDataToSign::from_scalar(cggmp24::generic_ec::Scalar::<E>::from_be_bytes_mod_order(
            d,
        ))
    });
    let t = signers.len() as u16;
    let results = round_based::sim::run(t, |j, party| {
        let mut rng = rng();
        let share: Option<&cggmp24::KeyShare<E, SecurityLevel>> = signers
            .get(usize::from(j))
            .and_then(|s| shares.get(usize::from(*s)))
            .map(KeyShare::inner);
        async move {
            let share = share.ok_or_else(|| Error::invalid_args("no share"))?;
            let builder = cggmp24::signing(eid.for_cggmp(), j, signers, share);
            match &data {
                Some(data) => builder.sign(&mut rng, party, data).await.map(|_| ()),
                None => builder.generate_presignature(&mut rng, party).await.map(|_| ()),
            }
            .map_err(|e| Error::protocol(&e))
        }
    })
    .map_err(sim_error)?;
    for r in results.into_vec() {
        r?;
    }
    Ok(())
}

/// FROST DKG: `dkg::part1..3` for every party, packages passed directly.
pub fn schnorr_keygen<C: SchnorrScheme, R: RngCore + CryptoRng>(
    n: u16,
    t: u16,
    rng: &mut R,
) -> Result<(), Error> {
    let err = |e: frost_core::Error<C>| Error::Protocol(e.to_string());
    let ids: Vec<Identifier<C>> = (0..n).map(schnorr::identifier::<C>).collect::<Result<_, _>>()?;
    let mut secrets1 = BTreeMap::new();
    let mut round1_wire = BTreeMap::new();
    for id in &ids {
        let (s, p) = dkg::part1::<C, _>(*id, n, t, &mut *rng).map_err(err)?;
        secrets1.insert(*id, s);
        round1_wire.insert(*id, p.serialize().map_err(err)?);
    }
    // What each party received in round 1: the others' packages, deserialized.
    let received_round1 = |me: &Identifier<C>| -> Result<BTreeMap<_, _>, Error> {
        round1_wire
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, bytes)| Ok((*id, dkg::round1::Package::<C>::deserialize(bytes).map_err(err)?)))
            .collect()
    };
    let mut secrets2 = BTreeMap::new();
    let mut round2_wire: BTreeMap<Identifier<C>, BTreeMap<Identifier<C>, Vec<u8>>> = BTreeMap::new();
    for (id, s) in secrets1 {
        // Each party deserializes the others' round-1 packages once and keeps them.
        let view = received_round1(&id)?;
        let (s2, packages) = dkg::part2(s, &view).map_err(err)?;
        secrets2.insert(id, (s2, view));
        for (to, p) in packages {
            round2_wire
                .entry(to)
                .or_default()
                .insert(id, p.serialize().map_err(err)?);
        }
    }
    for (id, (s2, view)) in &secrets2 {
        let received: BTreeMap<_, _> = round2_wire
            .remove(id)
            .unwrap_or_default()
            .into_iter()
            .map(|(from, bytes)| Ok((from, dkg::round2::Package::<C>::deserialize(&bytes).map_err(err)?)))
            .collect::<Result<_, Error>>()?;
        dkg::part3(s2, view, &received).map_err(err)?;
    }
    Ok(())
}

/// FROST signing: `round1::commit`, `round2::sign`, `aggregate` for every member, directly.
pub fn schnorr_sign<C: SchnorrScheme, R: RngCore + CryptoRng>(
    shares: &[schnorr::KeyShare<C>],
    signers: &[PartyIndex],
    message: &[u8],
    rng: &mut R,
) -> Result<(), Error> {
    let err = |e: frost_core::Error<C>| Error::Protocol(e.to_string());
    let committee: Vec<&schnorr::KeyShare<C>> = signers
        .iter()
        .filter_map(|s| shares.get(usize::from(*s)))
        .collect();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for s in &committee {
        let (n, c) = frost_core::round1::commit(s.key_package.signing_share(), &mut *rng);
        nonces.insert(*s.key_package.identifier(), n);
        commitments.insert(*s.key_package.identifier(), c);
    }
    let package = SigningPackage::new(commitments, message);
    let mut sig_shares = BTreeMap::new();
    for s in &committee {
        let id = *s.key_package.identifier();
        let n = nonces.get(&id).ok_or_else(|| Error::Protocol("nonce".into()))?;
        sig_shares.insert(
            id,
            frost_core::round2::sign(&package, n, &s.key_package).map_err(err)?,
        );
    }
    // Every member aggregates in the engine; do the same here.
    for s in &committee {
        frost_core::aggregate(&package, &sig_shares, &s.public_key_package).map_err(err)?;
    }
    Ok(())
}
