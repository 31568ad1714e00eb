//! Resharing of FROST key shares (see `docs/reshare.md`): key packages are converted to the
//! curve-generic form by the ciphersuites' own (de)serialisers, reshared, and rebuilt.

use std::collections::BTreeMap;

use cggmp24::generic_ec::{NonZero, Point, Scalar, SecretScalar};
use frost_core::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost_core::VerifyingKey;
use rand_core::{CryptoRng, RngCore};
use round_based::Mpc;

use super::{identifier, KeyShare, SchnorrScheme};
use crate::ecdsa::Reshared;
use crate::hd::DerivationPath;
use crate::reshare::{self, DealerShare, KeyInfo, ReshareSetup};
use crate::{Error, ExecutionId, WireMessage};

fn scalar_from_frost<C: SchnorrScheme>(bytes: &[u8]) -> Result<Scalar<C::Curve>, Error> {
    let parsed = if C::SCALARS_LITTLE_ENDIAN {
        Scalar::from_le_bytes(bytes)
    } else {
        Scalar::from_be_bytes(bytes)
    };
    parsed.map_err(|_| Error::InvalidKeyMaterial("frost scalar does not decode".into()))
}

fn scalar_to_frost<C: SchnorrScheme>(s: &Scalar<C::Curve>) -> Vec<u8> {
    if C::SCALARS_LITTLE_ENDIAN {
        s.to_le_bytes().as_bytes().to_vec()
    } else {
        s.to_be_bytes().as_bytes().to_vec()
    }
}

fn point_from_frost<C: SchnorrScheme>(bytes: &[u8]) -> Result<Point<C::Curve>, Error> {
    Point::from_bytes(bytes).map_err(|_| Error::InvalidKeyMaterial("frost point does not decode".into()))
}

fn frost_err<C: SchnorrScheme>(e: frost_core::Error<C>) -> Error {
    Error::InvalidKeyMaterial(e.to_string())
}

impl<C: SchnorrScheme> KeyShare<C> {
    /// The public information of this sharing, in resharing's form.
    pub fn key_info(&self) -> Result<KeyInfo<C::Curve>, Error> {
        let pkp = &self.public_key_package;
        let mut preimages = Vec::new();
        let mut public_shares = Vec::new();
        for j in 0..self.n() {
            let id = identifier::<C>(j)?;
            preimages.push(Scalar::from(u64::from(j) + 1));
            let share = pkp
                .verifying_shares()
                .get(&id)
                .ok_or_else(|| Error::InvalidKeyMaterial(format!("no public share for holder {j}")))?;
            public_shares.push(point_from_frost::<C>(&share.serialize().map_err(frost_err)?)?);
        }
        Ok(KeyInfo {
            public_key: point_from_frost::<C>(&pkp.verifying_key().serialize().map_err(frost_err)?)?,
            threshold: self.threshold(),
            preimages,
            public_shares,
            chain_code: self.chain_code,
        })
    }

    /// This holder's share `x_i` with the sharing's public information: a dealer's input to
    /// a reshare, and what a disaster-recovery export writes (the evaluation point is
    /// `key_info.preimages[index]`). Secret: the caller zeroizes it (it does, on drop).
    pub fn dealer_share(&self) -> Result<DealerShare<C::Curve>, Error> {
        let bytes = zeroize::Zeroizing::new(self.key_package.signing_share().serialize());
        let mut x = scalar_from_frost::<C>(&bytes)?;
        Ok(DealerShare {
            key_info: self.key_info()?,
            index: self.index(),
            secret: SecretScalar::new(&mut x),
        })
    }

    fn from_reshare(info: &KeyInfo<C::Curve>, share: reshare::NewShare<C::Curve>) -> Result<Self, Error> {
        let verifying_key =
            VerifyingKey::<C>::deserialize(&info.public_key.to_bytes(true)).map_err(frost_err)?;
        let mut shares = BTreeMap::new();
        for (j, p) in info.public_shares.iter().enumerate() {
            let id = identifier::<C>(j as u16)?;
            shares.insert(
                id,
                VerifyingShare::<C>::deserialize(&p.to_bytes(true)).map_err(frost_err)?,
            );
        }
        let index = share.index;
        let id = identifier::<C>(index)?;
        let secret_bytes = zeroize::Zeroizing::new(scalar_to_frost::<C>(AsRef::<Scalar<C::Curve>>::as_ref(
            &share.secret,
        )));
        let signing_share = SigningShare::<C>::deserialize(&secret_bytes).map_err(frost_err)?;
        let verifying_share = *shares
            .get(&id)
            .ok_or_else(|| Error::Protocol("no public share for the new index".into()))?;
        let key_package = KeyPackage::new(id, signing_share, verifying_share, verifying_key, info.threshold);
        let public_key_package = PublicKeyPackage::new(shares, verifying_key, Some(info.threshold));
        KeyShare::new(
            index,
            info.public_shares.len() as u16,
            key_package,
            public_key_package,
            info.chain_code,
        )
    }

    /// This device's share of the non-hardened child key at `path` (the root: the key
    /// itself): every share, public share and the group key are shifted by the same
    /// `hd-wallet` shift (ed25519: its `Edwards` derivation), so any threshold of child
    /// shares signs for the child key. The child share has no chain code of its own.
    pub fn derive(&self, path: &DerivationPath) -> Result<Self, Error> {
        if path.is_root() {
            return Ok(self.clone());
        }
        let chain_code = self.chain_code.ok_or_else(|| {
            Error::invalid_args(
                "this key has no chain code (it was made before child keys); it signs at its root only",
            )
        })?;
        let info = self.key_info()?;
        let shift = C::child_shift(&info.public_key, &chain_code, path)?;
        let shift_point = Point::generator() * shift;
        let child = KeyInfo {
            public_key: info.public_key + shift_point,
            public_shares: info.public_shares.iter().map(|p| *p + shift_point).collect(),
            chain_code: None,
            ..info
        };
        let dealer = self.dealer_share()?;
        // Added in place: no temporary copy of the share outlives `SecretScalar::new`.
        let mut secret = shift;
        secret += AsRef::<Scalar<C::Curve>>::as_ref(&dealer.secret);
        let share = reshare::NewShare {
            index: self.index(),
            secret: NonZero::from_secret_scalar(SecretScalar::new(&mut secret))
                .ok_or_else(|| Error::Protocol("the child share is zero".into()))?,
        };
        Self::from_reshare(&child, share)
    }
}

/// Reshares a Schnorr key. Old holders taking part pass their share; new holders get a
/// share of the same key for the new set.
pub async fn reshare<C, P, R>(
    party: P,
    eid: ExecutionId,
    setup: &ReshareSetup<'_, C::Curve>,
    old: Option<&KeyShare<C>>,
    rng: &mut R,
) -> Result<Reshared<KeyShare<C>, C::Curve>, Error>
where
    C: SchnorrScheme,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    let dealer = old.map(KeyShare::dealer_share).transpose()?;
    let out = reshare::run(party, eid, setup, dealer.as_ref(), rng).await?;
    let share = out
        .share
        .map(|s| KeyShare::from_reshare(&out.key_info, s))
        .transpose()?;
    Ok(Reshared {
        share,
        transcript: out.transcript,
        key_info: out.key_info,
        acknowledged: out.acknowledged,
    })
}
