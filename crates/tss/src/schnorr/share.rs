//! A device's FROST key share.
//!
//! # Security
//! The secret signing share lives in frost's `KeyPackage`, which zeroizes on drop; `Debug`
//! shows only public facts.

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::SchnorrScheme;
use crate::share::{self, Kind};
use crate::{Error, PartyIndex};

/// A device's share of a Schnorr key: its FROST key package, the group's public keys, and
/// the key's chain code for child keys (ed25519; shares made before child keys have none).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct KeyShare<C: SchnorrScheme> {
    index: PartyIndex,
    n: u16,
    pub(crate) key_package: KeyPackage<C>,
    pub(crate) public_key_package: PublicKeyPackage<C>,
    #[serde(default)]
    pub(crate) chain_code: Option<[u8; 32]>,
}

impl<C: SchnorrScheme> KeyShare<C> {
    pub(crate) fn new(
        index: PartyIndex,
        n: u16,
        key_package: KeyPackage<C>,
        public_key_package: PublicKeyPackage<C>,
        chain_code: Option<[u8; 32]>,
    ) -> Result<Self, Error> {
        let share = KeyShare {
            index,
            n,
            key_package,
            public_key_package,
            chain_code,
        };
        share.validate()?;
        Ok(share)
    }

    /// Checks that the share matches the public key package: its identifier, its public
    /// share `x_i·G`, and the group key.
    fn validate(&self) -> Result<(), Error> {
        let id = super::identifier::<C>(self.index)?;
        let bad = |what: &str| Err(Error::InvalidKeyMaterial(format!("schnorr key share: {what}")));
        if *self.key_package.identifier() != id {
            return bad("identifier does not match the index");
        }
        if self.key_package.verifying_key() != self.public_key_package.verifying_key() {
            return bad("group key differs from the public key package");
        }
        let expected = frost_core::keys::VerifyingShare::<C>::from(*self.key_package.signing_share());
        if self.public_key_package.verifying_shares().get(&id) != Some(&expected)
            || *self.key_package.verifying_share() != expected
        {
            return bad("public share does not match the secret share");
        }
        if self.public_key_package.verifying_shares().len() != usize::from(self.n) {
            return bad("number of public shares differs from n");
        }
        Ok(())
    }

    /// This device's index among the key's holders (`0..n`).
    pub fn index(&self) -> PartyIndex {
        self.index
    }

    /// Number of holders.
    pub fn n(&self) -> u16 {
        self.n
    }

    /// Signers needed.
    pub fn threshold(&self) -> u16 {
        *self.key_package.min_signers()
    }

    /// The group public key (ed25519: 32 bytes; BIP-340: 32-byte x-only key).
    pub fn public_key_bytes(&self) -> Result<Vec<u8>, Error> {
        C::public_key_bytes(self.public_key_package.verifying_key())
    }

    /// The FROST public key package (group key and every holder's public share).
    pub fn public_key_package(&self) -> &PublicKeyPackage<C> {
        &self.public_key_package
    }

    /// The chain code of the key's non-hardened child keys, if it has one.
    pub fn chain_code(&self) -> Option<[u8; 32]> {
        self.chain_code
    }

    /// Serializes in the versioned key-material format.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        share::encode(Kind::SchnorrKeyShare(C::KIND), self)
    }

    /// Parses and validates bytes made by [`KeyShare::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let share: KeyShare<C> = share::decode(Kind::SchnorrKeyShare(C::KIND), bytes)?;
        share.validate()?;
        Ok(share)
    }
}

impl<C: SchnorrScheme> std::fmt::Debug for KeyShare<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("scheme", &C::KIND)
            .field("index", &self.index)
            .field("threshold", &self.threshold())
            .field("n", &self.n)
            .field(
                "public_key",
                &self.public_key_bytes().map(hex::encode).unwrap_or_default(),
            )
            .field("secret", &"<redacted>")
            .finish()
    }
}
