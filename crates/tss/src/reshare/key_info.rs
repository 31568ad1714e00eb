//! The public information of a shared key, in the curve-generic form resharing works on.

use cggmp24::generic_ec::{Curve, Point, Scalar};
use generic_ec_zkp::polynomial::lagrange_coefficient;
use serde::{Deserialize, Serialize};

/// Public information of a `t`-of-`n` sharing of a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct KeyInfo<E: Curve> {
    /// The shared public key `X`.
    pub public_key: Point<E>,
    /// Signers needed.
    pub threshold: u16,
    /// Share preimages (x-coordinates) `I_j` of holders `0..n`.
    pub preimages: Vec<Scalar<E>>,
    /// Public shares `X_j = x_j·G` of holders `0..n`.
    pub public_shares: Vec<Point<E>>,
    /// HD chain code, kept across reshares.
    pub chain_code: Option<[u8; 32]>,
}

impl<E: Curve> std::fmt::Debug for KeyInfo<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInfo")
            .field("public_key", &hex::encode(self.public_key.to_bytes(true)))
            .field("threshold", &self.threshold)
            .field("n", &self.public_shares.len())
            .finish()
    }
}

impl<E: Curve> KeyInfo<E> {
    /// Number of holders.
    pub fn n(&self) -> u16 {
        self.public_shares.len() as u16
    }

    /// Checks that this is a consistent `t`-of-`n` sharing: sizes agree, preimages are
    /// distinct and non-zero, the public key is not the identity, and every public share
    /// lies on the degree-`t-1` polynomial through the first `t`, whose value at 0 is `X`.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.public_shares.len();
        let t = usize::from(self.threshold);
        if self.preimages.len() != n {
            return Err(format!(
                "{} preimages for {n} public shares",
                self.preimages.len()
            ));
        }
        if t == 0 || t > n {
            return Err(format!("threshold {t} is not between 1 and {n}"));
        }
        if self.public_key.is_zero() || self.public_shares.iter().any(|p| p.is_zero()) {
            return Err("public key or a public share is the identity".into());
        }
        for (a, x) in self.preimages.iter().enumerate() {
            if x.is_zero() || self.preimages.iter().skip(a + 1).any(|y| y == x) {
                return Err("share preimages must be distinct and non-zero".into());
            }
        }
        let base = self.preimages.get(..t).ok_or("too few preimages")?;
        let base_points = self.public_shares.get(..t).ok_or("too few public shares")?;
        let interpolate = |at: Scalar<E>| -> Option<Point<E>> {
            (0..t)
                .map(|j| Some(lagrange_coefficient(at, j, base)?.into_inner() * base_points.get(j)?))
                .sum()
        };
        if interpolate(Scalar::zero()) != Some(self.public_key) {
            return Err("public shares do not interpolate to the public key".into());
        }
        for (x, p) in self.preimages.iter().zip(&self.public_shares).skip(t) {
            if interpolate(*x) != Some(*p) {
                return Err("public shares do not lie on one polynomial of degree t-1".into());
            }
        }
        Ok(())
    }
}
