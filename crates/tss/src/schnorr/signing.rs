//! FROST two-round signing.
//!
//! Rounds: 0. broadcast nonce commitments (`round1::commit`); 1. broadcast signature share
//! (`round2::sign`) over the signing package built from everyone's commitments. Every member
//! aggregates (`aggregate`, which verifies each share and names the cheaters) and checks the
//! final signature under the group key (or its Taproot-tweaked output key).
//!
//! [`sign_gated`] holds the signature share back until a caller's gate opens: the nonce
//! commitments (fresh, used once, revealing nothing of the share) go out at once, so a caller
//! that must make something durable before its party signs (a device's mark that it ran the
//! operation) can write it during the first round instead of before it.

use std::collections::BTreeMap;

use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, SigningPackage};
use futures::SinkExt;
use rand_core::{CryptoRng, RngCore};
use round_based::rounds_router::{simple_store::RoundInput, RoundsRouter};
use round_based::{Delivery, Mpc, MpcParty, Outgoing, ProtocolMessage};
use serde::{Deserialize, Serialize};

use super::{culprits_of, identifier, KeyShare, SchnorrScheme};
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, Fault, PartyIndex, WireMessage};

/// A BIP-341 key-path tweak: sign for the output key `Q = P + H_TapTweak(P ‖ root)·G`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaprootTweak {
    /// The script tree's Merkle root; `None` for a key-path-only output.
    pub merkle_root: Option<[u8; 32]>,
}

impl TaprootTweak {
    /// BIP-341's output key `x(P + int(hash_TapTweak(x(P) ‖ merkle_root))·G)` of the x-only
    /// key `internal_key` (the key the tweaked signature verifies under).
    pub fn output_key(&self, internal_key: &[u8]) -> Result<[u8; 32], Error> {
        use cggmp24::generic_ec::{curves::Secp256k1, Point, Scalar};
        use sha2::{Digest, Sha256};
        let x: [u8; 32] = internal_key
            .try_into()
            .map_err(|_| Error::invalid_args("a BIP-340 key is 32 bytes"))?;
        let mut sec1 = [0x02; 33];
        sec1[1..].copy_from_slice(&x);
        let p = Point::<Secp256k1>::from_bytes(sec1).map_err(|_| Error::invalid_args("not a BIP-340 key"))?;
        let tag = Sha256::digest(b"TapTweak");
        let mut h = Sha256::new();
        h.update(tag);
        h.update(tag);
        h.update(x);
        if let Some(root) = &self.merkle_root {
            h.update(root);
        }
        let t = Scalar::<Secp256k1>::from_be_bytes(h.finalize())
            .map_err(|_| Error::invalid_args("the Taproot tweak is not below the group order"))?;
        let q = p + Point::generator() * t;
        let bytes = q.to_bytes(true);
        bytes
            .get(1..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::invalid_args("the Taproot output key is the identity"))
    }
}

/// A Schnorr signature: 64 bytes (`R ‖ s`; BIP-340: x-only `R`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(pub Vec<u8>);

/// Messages of FROST signing; each carries frost's own encoding of its package.
#[derive(Clone, Serialize, Deserialize, ProtocolMessage)]
enum Msg {
    Commitments(Commitments),
    Share(Share),
}

/// Round 0: `SigningCommitments::serialize`.
#[derive(Clone, Serialize, Deserialize)]
struct Commitments(wire::Bytes);

/// Round 1: `SignatureShare::serialize`.
#[derive(Clone, Serialize, Deserialize)]
struct Share(wire::Bytes);

/// Signs `message` as member `i` of the committee `signers` (keygen indices, the same order
/// for every member), optionally with a Taproot tweak (BIP-340 only).
#[allow(clippy::too_many_arguments)]
pub async fn sign<C, P, R>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    signers: &[PartyIndex],
    share: &KeyShare<C>,
    message: &[u8],
    taproot: Option<&TaprootTweak>,
    rng: &mut R,
) -> Result<Signature, Error>
where
    C: SchnorrScheme,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    let open = std::future::ready(Ok(()));
    sign_gated(party, eid, i, signers, share, message, taproot, rng, open).await
}

/// [`sign`], computing and sending this party's signature share only once `gate` resolves
/// `Ok` (its nonce commitments go out before). A gate that fails ends the run with its error
/// and no signature share sent: the nonces are dropped unused.
#[allow(clippy::too_many_arguments)]
pub async fn sign_gated<C, P, R, G>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    signers: &[PartyIndex],
    share: &KeyShare<C>,
    message: &[u8],
    taproot: Option<&TaprootTweak>,
    rng: &mut R,
    gate: G,
) -> Result<Signature, Error>
where
    C: SchnorrScheme,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
    G: std::future::Future<Output = Result<(), Error>>,
{
    let t = check_committee(share, i, signers)?;
    let ids: Vec<Identifier<C>> = signers
        .iter()
        .map(|s| identifier::<C>(*s))
        .collect::<Result<_, _>>()?;
    let (key_package, public_key_package) = C::tweak(
        share.key_package.clone(),
        share.public_key_package.clone(),
        taproot,
    )?;

    let (party, faults): (wire::CheckedParty<Msg, P>, _) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n: t,
            kinds: &[wire::B, wire::B],
        },
    );
    let MpcParty { delivery, .. } = party;
    let (incoming, mut outgoing) = delivery.split();
    let mut router = RoundsRouter::<Msg>::builder();
    let round_commit = router.add_round(RoundInput::<Commitments>::broadcast(i, t));
    let round_share = router.add_round(RoundInput::<Share>::broadcast(i, t));
    let mut router = router.listen(incoming);
    let io = |e: &dyn std::error::Error| Error::Transport(e.to_string());

    // Round 0: nonce commitments.
    let (nonces, mine) = frost_core::round1::commit(key_package.signing_share(), &mut *rng);
    outgoing
        .send(Outgoing::broadcast(Msg::Commitments(Commitments(wire::Bytes(
            mine.serialize().map_err(|e| Error::Protocol(e.to_string()))?,
        )))))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    // The others' commitments and the gate at once: the share waits for both, and a gate
    // that fails ends the run at once.
    let commitments_in = async {
        router
            .complete(round_commit)
            .await
            .map_err(|e| faults.explain(Error::protocol(&e)))
    };
    let (received, ()) = futures::future::try_join(commitments_in, gate).await?;
    let mut commitments = BTreeMap::new();
    for (sender, _, Commitments(bytes)) in received.into_iter_indexed() {
        let c = SigningCommitments::<C>::deserialize(&bytes.0)
            .map_err(|e| faults.blame(sender, Fault::Garbled(format!("nonce commitments: {e}"))))?;
        if let Some(id) = ids.get(usize::from(sender)) {
            commitments.insert(*id, c);
        }
    }
    commitments.insert(*key_package.identifier(), mine);
    let signing_package = SigningPackage::new(commitments, message);

    // Round 1: signature shares.
    let my_share = frost_core::round2::sign(&signing_package, &nonces, &key_package)
        .map_err(|e| culprits_of(&e, &ids))?;
    drop(nonces);
    outgoing
        .send(Outgoing::broadcast(Msg::Share(Share(wire::Bytes(
            my_share.serialize(),
        )))))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let received = router
        .complete(round_share)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut shares = BTreeMap::new();
    for (sender, _, Share(bytes)) in received.into_iter_indexed() {
        let s = SignatureShare::<C>::deserialize(&bytes.0)
            .map_err(|e| faults.blame(sender, Fault::Garbled(format!("signature share: {e}"))))?;
        if let Some(id) = ids.get(usize::from(sender)) {
            shares.insert(*id, s);
        }
    }
    shares.insert(*key_package.identifier(), my_share);
    // `aggregate` verifies the signature under the (tweaked) group key, and on failure
    // checks every share to name the cheaters: no unverified signature leaves here.
    let signature = frost_core::aggregate(&signing_package, &shares, &public_key_package)
        .map_err(|e| culprits_of(&e, &ids))?;
    let bytes = signature
        .serialize()
        .map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(Signature(bytes))
}

fn check_committee<C: SchnorrScheme>(
    share: &KeyShare<C>,
    i: PartyIndex,
    signers: &[PartyIndex],
) -> Result<u16, Error> {
    let t = share.threshold();
    if signers.len() < usize::from(t) || signers.len() > usize::from(share.n()) {
        return Err(Error::invalid_args(format!(
            "between {t} and {} signers are needed, {} given",
            share.n(),
            signers.len()
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
    Ok(signers.len() as u16)
}
