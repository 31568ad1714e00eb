//! ECDSA by CGGMP24 ([`vsigner_tss::ecdsa`]): keygen and reshare followed by the new set's
//! aux-info ([`aux_info`](super::aux_info)), full signing or signing with a presignature
//! ([`presign`](super::presign)), and the share record (core share and aux-info).

use std::marker::PhantomData;

use generic_ec::Point;
use rand_core::OsRng;
use vsigner_tss::ecdsa::{self, EcdsaCurve, Message};
use vsigner_tss::ecdsa::{AlwaysHasAffineX, HdWallet, NonZero, Slip10};
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::ProtocolTag;
use zeroize::Zeroizing;

use super::aux_info::AuxReuse;
use super::scheme::{key_set_hash, ExportedShare, NewShare, ReshareParams, Reshared, Scheme, Signature};
use super::sign::Signing;
use super::{Committee, RunContext, RunFailure};
use crate::approval_request::SigningInput;
use crate::coordinator_api::Operation;
use crate::metrics::Protocol;

/// Threshold ECDSA on the curve `E` (secp256k1 or P-256). The share records of both curves
/// have the same layout; the engine's core-share encoding names its curve, so a record of
/// one curve is never read as the other.
pub struct Ecdsa<E>(PhantomData<E>);

const RECORD_MAGIC: &[u8; 4] = b"VSKE";

/// An ECDSA key-share record: `"VSKE" ‖ u32 length ‖ core share ‖ aux-info`, each in the
/// engine's versioned format (multi-exponentiation tables are not stored).
pub(super) fn record<E: EcdsaCurve>(
    core: &ecdsa::CoreShare<E>,
    aux: &ecdsa::AuxInfo,
) -> Result<Zeroizing<Vec<u8>>, RunFailure> {
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("key share does not encode: {e}"));
    let core = core.to_bytes().map_err(bad)?;
    let aux = aux.to_bytes().map_err(bad)?;
    let mut out = Zeroizing::new(Vec::with_capacity(8 + core.len() + aux.len()));
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(core.len() as u32).to_be_bytes());
    out.extend_from_slice(&core);
    out.extend_from_slice(&aux);
    Ok(out)
}

fn record_parts(bytes: &[u8]) -> Result<(&[u8], &[u8]), RunFailure> {
    let bad = || RunFailure::new("the stored ECDSA share record is malformed");
    let rest = bytes.strip_prefix(RECORD_MAGIC).ok_or_else(bad)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
    rest.split_at_checked(len).ok_or_else(bad)
}

/// The aux-info of a record, if `bytes` is an ECDSA share record (`None` for other schemes).
pub fn aux_info_of(bytes: &[u8]) -> Option<Result<ecdsa::AuxInfo, RunFailure>> {
    if !bytes.starts_with(RECORD_MAGIC) {
        return None;
    }
    Some(record_parts(bytes).and_then(|(_, aux)| {
        ecdsa::AuxInfo::from_bytes(aux).map_err(|e| RunFailure::new(format!("stored share: {e}")))
    }))
}

/// The core share of a record (enough to deal in a reshare).
pub(super) fn core_of<E: EcdsaCurve>(bytes: &[u8]) -> Result<ecdsa::CoreShare<E>, RunFailure> {
    let (core, _) = record_parts(bytes)?;
    ecdsa::CoreShare::from_bytes(core).map_err(|e| RunFailure::new(format!("stored share: {e}")))
}

/// The complete key share of a record (to sign and presign).
pub(super) fn share_of<E: EcdsaCurve>(bytes: &[u8]) -> Result<ecdsa::KeyShare<E>, RunFailure> {
    let (core, aux) = record_parts(bytes)?;
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("stored share: {e}"));
    let core = ecdsa::CoreShare::from_bytes(core).map_err(bad)?;
    let aux = ecdsa::AuxInfo::from_bytes(aux).map_err(bad)?;
    ecdsa::KeyShare::from_parts(core, aux).map_err(bad)
}

fn new_share<E: EcdsaCurve>(
    core: &ecdsa::CoreShare<E>,
    aux: &ecdsa::AuxInfo,
) -> Result<NewShare, RunFailure> {
    let info = core
        .key_info()
        .map_err(|e| RunFailure::new(format!("key share: {e}")))?;
    Ok(NewShare {
        record: record(core, aux)?,
        public_key: core.public_key_bytes(),
        chain_code: core.chain_code().map(|c| c.to_vec()),
        key_set_hash: key_set_hash(&info),
    })
}

impl<E: EcdsaCurve> Scheme for Ecdsa<E>
where
    Slip10: HdWallet<E>,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
{
    fn summary(record: &[u8]) -> Result<(Vec<u8>, String), RunFailure> {
        let core = core_of::<E>(record)?;
        let info = core
            .key_info()
            .map_err(|e| RunFailure::new(format!("stored share: {e}")))?;
        Ok((core.public_key_bytes(), key_set_hash(&info)))
    }

    fn export(record: &[u8]) -> Result<ExportedShare, RunFailure> {
        let share = core_of::<E>(record)?
            .dealer_share()
            .map_err(|e| RunFailure::new(format!("stored share: {e}")))?;
        ExportedShare::of(&share)
    }

    async fn keygen(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        threshold: u16,
    ) -> Result<Vec<NewShare>, RunFailure> {
        let n = committee.members.len() as u16;
        let members = committee.all();
        let members = &members;
        // Agree on aux-info first: a device set that has it already needs no primes;
        // otherwise take them before the keygen (a device without them must not start).
        let keygen = move || async move {
            run.session(
                ProtocolTag::EcdsaKeygen,
                op,
                members,
                Some(Protocol::EcdsaKeygen),
                move |party, eid, i| async move {
                    ecdsa::keygen::<E, _, _>(party, eid, i, n, threshold, &mut OsRng).await
                },
            )
            .await
            .map(Some)
        };
        // The keygen's parties are the aux-info set's: both come in this device's party order.
        let (cores, auxes) = run
            .with_aux_info(op, members, AuxReuse::SameSet, keygen)
            .await?
            .ok_or_else(|| RunFailure::new("keygen produced no share"))?;
        if cores.len() != auxes.len() {
            return Err(RunFailure::new("keygen and aux-info parties differ"));
        }
        cores.iter().zip(&auxes).map(|(c, a)| new_share(c, a)).collect()
    }

    async fn sign(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        signers: &[u16],
        records: &[&[u8]],
        what: &Signing<'_>,
    ) -> Result<Signature, RunFailure> {
        let SigningInput::Digest(digest) = what.input else {
            return Err(RunFailure::new("ECDSA signs a 32-byte digest"));
        };
        if what.taproot.is_some() {
            return Err(RunFailure::new("a Taproot tweak applies to bip340 vaults only"));
        }
        let members = committee.all();
        let presignature_id = op.sign.as_ref().and_then(|s| s.presignature_id.as_deref());
        let sig = if let Some(presignature_id) = presignature_id {
            if what.path.is_some() {
                return Err(RunFailure::new("a presignature signs at the root key only"));
            }
            run.sign_with_presignature::<E>(op, committee, signers, presignature_id, what.payload, digest)
                .await?
        } else {
            let mut shares = std::collections::BTreeMap::new();
            for (p, record) in committee.mine.iter().zip(records) {
                shares.insert(*p, share_of::<E>(record)?);
            }
            let path: Option<DerivationPath> = what
                .path
                .map(|p| p.parse())
                .transpose()
                .map_err(|e: vsigner_tss::Error| RunFailure::new(format!("derivation path: {e}")))?;
            let message = Message::Digest(*digest);
            run.session(
                ProtocolTag::EcdsaSign,
                op,
                &members,
                Some(Protocol::EcdsaSign),
                |party, eid, i| {
                    let (shares, message, path) = (&shares, &message, path.as_ref());
                    async move {
                        let share = shares.get(&i).ok_or(vsigner_tss::Error::InvalidArguments(
                            "no share for this party".into(),
                        ))?;
                        ecdsa::sign(party, eid, i, signers, share, message, path, &mut OsRng).await
                    }
                },
            )
            .await?
        };
        let sig = sig
            .into_iter()
            .next()
            .ok_or_else(|| RunFailure::new("the signing run gave no signature"))?;
        Ok(Signature {
            bytes: sig.to_bytes().to_vec(),
            recovery_id: Some(sig.recovery_id),
        })
    }

    async fn reshare(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        params: &ReshareParams<'_>,
        old: &[Option<&[u8]>],
    ) -> Result<Vec<Reshared>, RunFailure> {
        let public_key = Point::<E>::from_bytes(params.public_key)
            .map_err(|_| RunFailure::new(format!("vault public key is not a {} point", E::KIND.as_str())))?;
        let parties = params.parties(committee, public_key, old, core_of::<E>)?;
        let members = committee.all();
        let (members, parties) = (&members, &parties);
        let reshare = move || async move {
            let reshared = run
                .session(
                    ProtocolTag::Reshare,
                    op,
                    members,
                    Some(Protocol::EcdsaReshare),
                    move |party, eid, i| async move {
                        let (setup, old_core) = parties.get(&i).ok_or(
                            vsigner_tss::Error::InvalidArguments("no setup for this party".into()),
                        )?;
                        ecdsa::reshare(party, eid, setup, old_core.as_ref(), &mut OsRng).await
                    },
                )
                .await?;
            Ok(Some(reshared))
        };
        // A device that receives shares takes primes for the new set's aux-info first (a
        // device without primes must not start); one that only deals goes straight to the
        // reshare. A reshare never reuses aux-info: a refresh onto the same set must also
        // replace the Paillier keys, or a leaked one plus t-1 colluders would still yield
        // the key afterwards.
        let receives = committee
            .mine
            .iter()
            .any(|p| committee.member(*p).new_index.is_some());
        let (reshared, auxes) = if receives {
            run.with_aux_info(op, params.new_set, AuxReuse::Never, reshare)
                .await?
                .ok_or_else(|| RunFailure::new("the reshare returned nothing"))?
        } else {
            let reshared = reshare()
                .await?
                .ok_or_else(|| RunFailure::new("the reshare returned nothing"))?;
            (reshared, Vec::new())
        };
        // The aux-info of each new share this device receives, by new index (its parties of
        // the new set, whose position is the new index).
        let aux_of: std::collections::BTreeMap<u16, &ecdsa::AuxInfo> = params
            .new_set
            .iter()
            .enumerate()
            .filter(|(_, m)| m.device_id == run.me())
            .map(|(k, _)| k as u16)
            .zip(&auxes)
            .collect();
        reshared
            .iter()
            .zip(&committee.mine)
            .map(|(r, p)| {
                let share = match (&r.share, committee.member(*p).new_index) {
                    (Some(core), Some(k)) => {
                        let aux = aux_of
                            .get(&k)
                            .ok_or_else(|| RunFailure::new("a new share has no aux-info"))?;
                        Some(new_share(core, aux)?)
                    }
                    (None, None) => None,
                    _ => return Err(RunFailure::new("a party's new share does not match its role")),
                };
                Ok(Reshared {
                    share,
                    key_set_hash: key_set_hash(&r.key_info),
                    acknowledged: r.acknowledged.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sha2::{Digest, Sha256};

    use super::*;
    use vsigner_tss::ecdsa::Secp256k1;

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
        let record = record(&core, &aux).unwrap();
        let share = share_of::<Secp256k1>(&record).unwrap();
        assert_eq!(share.index(), 1);
        assert_eq!(share.public_key_bytes(), core.public_key_bytes());
        assert_eq!(
            core_of::<Secp256k1>(&record).unwrap().public_key_bytes(),
            core.public_key_bytes()
        );
        for cut in [0, 3, 7, 8, 100, record.len() - 1] {
            assert!(share_of::<Secp256k1>(&record[..cut]).is_err(), "cut at {cut}");
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
        let ed = vsigner_tss::schnorr::KeyShare::<vsigner_tss::schnorr::Ed25519>::from_bytes(&fixture(
            "key-shares/ed25519-2of3/party-0.vsgn",
        ))
        .unwrap();
        let info = ed.key_info().unwrap();
        assert!(info.public_shares.iter().all(|p| p.to_bytes(true).len() == 32));
        assert_eq!(key_set_hash(&info).len(), 64);
    }
}
