//! Threshold Schnorr by FROST ([`vsigner_tss::schnorr`]): keygen, signing of the approved
//! message, reshare; the share record is the FROST key package in the engine's format.

use std::marker::PhantomData;

use rand_core::OsRng;
use vsigner_approval::Curve;
use vsigner_tss::reshare::ReshareSetup;
use vsigner_tss::schnorr::{self, Ed25519};
use vsigner_tss::ProtocolTag;

use super::scheme::{key_set_hash, NewShare, ReshareParams, Reshared, Scheme, Signature};
use super::sign::Signing;
use super::{Committee, RunContext, RunFailure};
use crate::coordinator_api::Operation;
use crate::metrics::Protocol;

/// FROST with the ciphersuite `C`.
pub struct Frost<C>(PhantomData<C>);

fn share_of(record: &[u8]) -> Result<schnorr::KeyShare<Ed25519>, RunFailure> {
    schnorr::KeyShare::<Ed25519>::from_bytes(record)
        .map_err(|e| RunFailure::new(format!("stored share: {e}")))
}

fn new_share(share: &schnorr::KeyShare<Ed25519>) -> Result<NewShare, RunFailure> {
    let bad = |e: vsigner_tss::Error| RunFailure::new(format!("key share: {e}"));
    let info = share.key_info().map_err(bad)?;
    Ok(NewShare {
        record: share.to_bytes().map_err(bad)?,
        public_key: share.public_key_bytes().map_err(bad)?,
        chain_code: None,
        key_set_hash: key_set_hash(&info),
    })
}

impl Scheme for Frost<Ed25519> {
    const CURVE: Curve = Curve::Ed25519;

    fn summary(record: &[u8]) -> Result<(Vec<u8>, String), RunFailure> {
        let bad = |e: vsigner_tss::Error| RunFailure::new(format!("stored share: {e}"));
        let share = share_of(record)?;
        let info = share.key_info().map_err(bad)?;
        Ok((share.public_key_bytes().map_err(bad)?, key_set_hash(&info)))
    }

    async fn keygen(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        threshold: u16,
    ) -> Result<NewShare, RunFailure> {
        let (i, n) = (committee.me, committee.members.len() as u16);
        let share = run
            .session(
                ProtocolTag::SchnorrKeygen,
                op,
                &committee.all(),
                Some(Protocol::FrostKeygen),
                |party, eid| async move {
                    schnorr::keygen::<Ed25519, _, _>(party, eid, i, n, threshold, &mut OsRng).await
                },
            )
            .await?;
        new_share(&share)
    }

    async fn sign(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        signers: &[u16],
        record: &[u8],
        what: &Signing<'_>,
    ) -> Result<Signature, RunFailure> {
        if what.path.is_some() {
            return Err(RunFailure::new("derivation paths are not supported on ed25519"));
        }
        let share = share_of(record)?;
        let message = what.input.bytes().to_vec();
        let i = committee.me;
        let sig = run
            .session(
                ProtocolTag::SchnorrSign,
                op,
                &committee.all(),
                Some(Protocol::FrostSign),
                |party, eid| {
                    let (share, message) = (&share, &message);
                    async move { schnorr::sign(party, eid, i, signers, share, message, None, &mut OsRng).await }
                },
            )
            .await?;
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
        old: Option<&[u8]>,
    ) -> Result<Reshared, RunFailure> {
        let public_key = generic_ec::Point::<generic_ec::curves::Ed25519>::from_bytes(params.public_key)
            .map_err(|_| RunFailure::new("vault public key is not an ed25519 point"))?;
        let old_share = old.map(share_of).transpose()?;
        let setup = ReshareSetup {
            roles: params.roles,
            me: params.me,
            old_n: params.old_n,
            old_threshold: params.old_threshold,
            new_threshold: params.new_threshold,
            public_key,
        };
        let reshared = run
            .session(
                ProtocolTag::Reshare,
                op,
                &committee.all(),
                Some(Protocol::FrostReshare),
                |party, eid| {
                    let (setup, old_share) = (&setup, old_share.as_ref());
                    async move { schnorr::reshare(party, eid, setup, old_share, &mut OsRng).await }
                },
            )
            .await?;
        Ok(Reshared {
            share: reshared.share.as_ref().map(new_share).transpose()?,
            key_set_hash: key_set_hash(&reshared.key_info),
            acknowledged: reshared.acknowledged,
        })
    }
}
