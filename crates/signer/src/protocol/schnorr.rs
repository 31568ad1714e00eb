//! Threshold Schnorr by FROST ([`vsigner_tss::schnorr`]), EdDSA on ed25519 and BIP-340 on
//! secp256k1: keygen, signing of the approved message (ed25519: at the vault key or an
//! approved child key; BIP-340: for the vault key or, when approved, its Taproot output
//! key), reshare; the share record is the FROST key package and chain code in the engine's
//! format, which names its ciphersuite.

use std::marker::PhantomData;

use rand_core::OsRng;
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::schnorr::{self, SchnorrScheme, TaprootTweak};
use vsigner_tss::ProtocolTag;

use super::scheme::{key_set_hash, ExportedShare, NewShare, ReshareParams, Reshared, Scheme, Signature};
use super::sign::Signing;
use super::{Committee, RunContext, RunFailure};
use crate::coordinator_api::Operation;
use crate::metrics::Protocol;

/// FROST with the ciphersuite `C`.
pub struct Frost<C>(PhantomData<C>);

fn share_of<C: SchnorrScheme>(record: &[u8]) -> Result<schnorr::KeyShare<C>, RunFailure> {
    schnorr::KeyShare::<C>::from_bytes(record).map_err(|e| RunFailure::new(format!("stored share: {e}")))
}

fn new_share<C: SchnorrScheme>(share: &schnorr::KeyShare<C>) -> Result<NewShare, RunFailure> {
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("key share: {e}"));
    let info = share.key_info().map_err(bad)?;
    Ok(NewShare {
        record: share.to_bytes().map_err(bad)?,
        public_key: share.public_key_bytes().map_err(bad)?,
        chain_code: share.chain_code().map(|c| c.to_vec()),
        key_set_hash: key_set_hash(&info),
    })
}

impl<C: SchnorrScheme> Scheme for Frost<C> {
    /// The nonce commitments go out while the run mark is written; the signature share waits
    /// for it.
    const SIGN_WAITS_FOR_RUN_MARK: bool = true;

    fn summary(record: &[u8]) -> Result<(Vec<u8>, String), RunFailure> {
        let bad = |e: vsigner_tss::Error| RunFailure::new(format!("stored share: {e}"));
        let share = share_of::<C>(record)?;
        let info = share.key_info().map_err(bad)?;
        Ok((share.public_key_bytes().map_err(bad)?, key_set_hash(&info)))
    }

    fn export(record: &[u8]) -> Result<ExportedShare, RunFailure> {
        let share = share_of::<C>(record)?
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
        let shares = run
            .session(
                ProtocolTag::SchnorrKeygen,
                op,
                &committee.all(),
                Some(Protocol::FrostKeygen),
                |party, eid, i| async move {
                    schnorr::keygen::<C, _, _>(party, eid, i, n, threshold, &mut OsRng).await
                },
            )
            .await?;
        shares.iter().map(new_share).collect()
    }

    async fn sign(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        signers: &[u16],
        records: &[&[u8]],
        what: &Signing<'_>,
    ) -> Result<Signature, RunFailure> {
        // The tweak as approved; the engine refuses one for a scheme other than BIP-340.
        let taproot = what.taproot.map(|t| TaprootTweak {
            merkle_root: t.merkle_root,
        });
        let path: Option<DerivationPath> = what
            .path
            .map(|p| p.parse())
            .transpose()
            .map_err(|e: vsigner_tss::Error| RunFailure::new(format!("derivation path: {e}")))?;
        // Each of this device's parties' shares, by party index; at a child key, every
        // party shifts its share by the same public amount.
        let mut shares = std::collections::BTreeMap::new();
        for (p, record) in committee.mine.iter().zip(records) {
            let share = share_of::<C>(record)?;
            let share = match &path {
                Some(path) => share
                    .derive(path)
                    .map_err(|e| RunFailure::new(format!("child key {path}: {e}")))?,
                None => share,
            };
            shares.insert(*p, share);
        }
        let message = what.input.bytes().to_vec();
        let sigs = run
            .session(
                ProtocolTag::SchnorrSign,
                op,
                &committee.all(),
                Some(Protocol::FrostSign),
                |party, eid, i| {
                    let (shares, message, taproot) = (&shares, &message, taproot.as_ref());
                    let marked = async {
                        run.run_mark
                            .written()
                            .await
                            .map_err(|f| vsigner_tss::Error::Protocol(f.reason))
                    };
                    async move {
                        let share = shares.get(&i).ok_or(vsigner_tss::Error::InvalidArguments(
                            "no share for this party".into(),
                        ))?;
                        schnorr::sign_gated(
                            party, eid, i, signers, share, message, taproot, &mut OsRng, marked,
                        )
                        .await
                    }
                },
            )
            .await?;
        let sig = sigs
            .first()
            .ok_or_else(|| RunFailure::new("the signing run gave no signature"))?;
        Ok(Signature {
            bytes: sig.0.to_vec(),
            recovery_id: None,
        })
    }

    async fn reshare(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        params: &ReshareParams<'_>,
        old: &[Option<&[u8]>],
    ) -> Result<Vec<Reshared>, RunFailure> {
        let public_key = C::public_key_point(params.public_key).map_err(|e| {
            RunFailure::new(format!("vault public key is not a {} key: {e}", C::KIND.as_str()))
        })?;
        let parties = params.parties(committee, public_key, old, share_of::<C>)?;
        let reshared = run
            .session(
                ProtocolTag::Reshare,
                op,
                &committee.all(),
                Some(Protocol::FrostReshare),
                |party, eid, i| {
                    let parties = &parties;
                    async move {
                        let (setup, old_share) = parties.get(&i).ok_or(
                            vsigner_tss::Error::InvalidArguments("no setup for this party".into()),
                        )?;
                        schnorr::reshare(party, eid, setup, old_share.as_ref(), &mut OsRng).await
                    }
                },
            )
            .await?;
        reshared
            .iter()
            .map(|r| {
                Ok(Reshared {
                    share: r.share.as_ref().map(new_share).transpose()?,
                    key_set_hash: key_set_hash(&r.key_info),
                    acknowledged: r.acknowledged.clone(),
                })
            })
            .collect()
    }
}
