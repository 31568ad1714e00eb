//! Resharing of ECDSA core shares (see `docs/reshare.md`).

use cggmp24::generic_ec::{Curve, NonZero, Scalar};
use cggmp24::key_share::{DirtyIncompleteKeyShare, DirtyKeyInfo, Validate, VssSetup};
use rand_core::{CryptoRng, RngCore};
use round_based::Mpc;

use super::{CoreShare, EcdsaCurve};
use crate::reshare::{self, Acknowledged, DealerShare, KeyInfo, NewShare, ReshareSetup};
use crate::{Error, ExecutionId, WireMessage};

/// A reshare's result for one participant.
#[derive(Debug)]
pub struct Reshared<S, E: Curve> {
    /// The new share, if this participant is in the new set.
    pub share: Option<S>,
    /// The transcript hash of the run.
    pub transcript: [u8; 32],
    /// Public information of the new sharing (every participant, dealers that leave
    /// included, knows it: it names what the new holders' receipts must state).
    pub key_info: KeyInfo<E>,
    /// Whether every acknowledgement arrived.
    pub acknowledged: Acknowledged,
}

impl<E: EcdsaCurve> CoreShare<E> {
    /// The public information of this sharing, in resharing's form.
    pub fn key_info(&self) -> Result<KeyInfo<E>, Error> {
        let info = &self.0.key_info;
        let vss = info.vss_setup.as_ref().ok_or_else(|| {
            Error::InvalidKeyMaterial("an n-of-n (non-threshold) key cannot be reshared".into())
        })?;
        Ok(KeyInfo {
            public_key: *info.shared_public_key,
            threshold: vss.min_signers,
            preimages: vss.I.iter().map(|s| *s.as_ref()).collect(),
            public_shares: info.public_shares.iter().map(|p| **p).collect(),
            chain_code: info.chain_code,
        })
    }

    /// This holder's share `x_i` with the sharing's public information: a dealer's input to
    /// a reshare, and what a disaster-recovery export writes (the evaluation point is
    /// `key_info.preimages[index]`). Secret: the caller zeroizes it (it does, on drop).
    pub fn dealer_share(&self) -> Result<DealerShare<E>, Error> {
        Ok(DealerShare {
            key_info: self.key_info()?,
            index: self.index(),
            secret: self.0.x.clone().into_inner(),
        })
    }

    fn from_reshare(info: &KeyInfo<E>, share: NewShare<E>) -> Result<Self, Error> {
        let bad = |what: &str| Error::Protocol(format!("reshared key: {what}"));
        let dirty = DirtyIncompleteKeyShare {
            i: share.index,
            key_info: DirtyKeyInfo {
                curve: Default::default(),
                shared_public_key: NonZero::from_point(info.public_key)
                    .ok_or_else(|| bad("zero public key"))?,
                public_shares: info
                    .public_shares
                    .iter()
                    .map(|p| NonZero::from_point(*p))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("zero public share"))?,
                vss_setup: Some(VssSetup {
                    min_signers: info.threshold,
                    I: info
                        .preimages
                        .iter()
                        .map(|s: &Scalar<E>| NonZero::from_scalar(*s))
                        .collect::<Option<_>>()
                        .ok_or_else(|| bad("zero preimage"))?,
                }),
                chain_code: info.chain_code,
            },
            x: share.secret,
        };
        dirty
            .validate()
            .map(CoreShare)
            .map_err(|e| Error::Protocol(format!("reshared key share is invalid: {}", e.into_error())))
    }
}

/// Reshares an ECDSA key. Old holders taking part pass their core share; new holders get a
/// core share for the new set (join it with that set's aux-info to sign).
pub async fn reshare<E, P, R>(
    party: P,
    eid: ExecutionId,
    setup: &ReshareSetup<'_, E>,
    old: Option<&CoreShare<E>>,
    rng: &mut R,
) -> Result<Reshared<CoreShare<E>, E>, Error>
where
    E: EcdsaCurve,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    let dealer = old.map(CoreShare::dealer_share).transpose()?;
    let out = reshare::run(party, eid, setup, dealer.as_ref(), rng).await?;
    let share = out
        .share
        .map(|s| CoreShare::from_reshare(&out.key_info, s))
        .transpose()?;
    Ok(Reshared {
        share,
        transcript: out.transcript,
        key_info: out.key_info,
        acknowledged: out.acknowledged,
    })
}
