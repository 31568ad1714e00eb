//! The vault key from a threshold of shares: Lagrange interpolation at zero over the curve's
//! scalar field (`generic-ec`), checked against the public key the files carry.
//!
//! For ed25519 the result is the secret *scalar*: a threshold EdDSA key never had the 32-byte
//! seed RFC 8032 hashes into a scalar and a nonce prefix, so wallets that import only seeds
//! cannot take it; tools that sign with an expanded key (scalar ‖ prefix) can.

use generic_ec::curves::{Ed25519, Secp256k1, Secp256r1};
use generic_ec::{Curve as EcCurve, NonZero, Point, Scalar, SecretScalar};
use num_bigint::BigUint;
use zeroize::{Zeroize as _, Zeroizing};

use crate::plaintext::{SecretBytes, Share};
use crate::{Curve, RecoveryError};

/// A reconstructed vault key: the secret scalar (big-endian) and the public key (compressed:
/// SEC1 for the ECDSA curves, RFC 8032 for ed25519).
pub struct VaultKey {
    /// The curve.
    pub curve: Curve,
    /// The secret scalar, big-endian.
    pub secret: SecretBytes,
    /// The public key, compressed.
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKey")
            .field("curve", &self.curve)
            .field("secret", &"<redacted>")
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// Reconstructs the key of `curve` from `shares` (at least the threshold, distinct ids) and
/// checks it against `public_key` (affine coordinates, big-endian).
pub fn reconstruct(
    curve: Curve,
    threshold: u32,
    shares: &[Share],
    public_key: &([u8; 32], [u8; 32]),
) -> Result<VaultKey, RecoveryError> {
    if threshold == 0 {
        return Err(RecoveryError::Format("a threshold of 0 shares".into()));
    }
    let have = shares.len();
    let need = threshold as usize;
    if have < need {
        return Err(RecoveryError::NotEnoughShares { have, need });
    }
    let used = &shares[..need];
    for (i, a) in used.iter().enumerate() {
        if used[..i].iter().any(|b| b.id == a.id) {
            return Err(RecoveryError::Format(
                "two shares have the same ShareID: they are one share, not two".into(),
            ));
        }
    }
    match curve {
        Curve::Secp256k1 | Curve::Bip340 => interpolate::<Secp256k1>(curve, used, &sec1(public_key)),
        Curve::Secp256r1 => interpolate::<Secp256r1>(curve, used, &sec1(public_key)),
        Curve::Ed25519 => {
            // Only y and the sign of x make the encoding: the rest of x must agree too.
            let compressed = edwards_compressed(public_key);
            if edwards_xy(&compressed).as_ref() != Some(public_key) {
                return Err(RecoveryError::Format(
                    "the public key's coordinates are not a point of ed25519".into(),
                ));
            }
            interpolate::<Ed25519>(curve, used, &compressed)
        }
    }
}

fn sec1((x, y): &([u8; 32], [u8; 32])) -> Vec<u8> {
    let mut out = vec![0x04];
    out.extend_from_slice(x);
    out.extend_from_slice(y);
    out
}

/// RFC 8032 encoding of an affine Edwards point: y little-endian, the sign of x in the top bit.
fn edwards_compressed((x, y): &([u8; 32], [u8; 32])) -> Vec<u8> {
    let mut out: Vec<u8> = y.iter().rev().copied().collect();
    if x[31] & 1 == 1 {
        out[31] |= 0x80;
    }
    out
}

fn interpolate<E: EcCurve>(
    curve: Curve,
    shares: &[Share],
    public_key: &[u8],
) -> Result<VaultKey, RecoveryError> {
    let expected = Point::<E>::from_bytes(public_key).map_err(|_| {
        RecoveryError::Format("the public key in the files is not a point of the curve".into())
    })?;
    if expected.is_zero() {
        return Err(RecoveryError::Format(
            "the public key in the files is the identity point".into(),
        ));
    }
    let xs: Vec<Scalar<E>> = shares
        .iter()
        .map(|s| Scalar::from_be_bytes_mod_order(s.id))
        .collect();
    if xs.iter().any(|x| bool::from(subtle_is_zero(x))) {
        return Err(RecoveryError::Format("a ShareID of zero".into()));
    }
    let mut secret = SecretScalar::<E>::zero();
    for (i, share) in shares.iter().enumerate() {
        let mut lambda = Scalar::<E>::one();
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                let denominator = NonZero::from_scalar(*xj - xs[i])
                    .ok_or_else(|| RecoveryError::Format("two shares have the same ShareID".into()))?;
                lambda = lambda * xj * denominator.invert();
            }
        }
        let mut value = Scalar::<E>::from_be_bytes_mod_order(share.value.as_ref());
        let mut sum = secret.as_ref() + lambda * value;
        value.zeroize();
        secret = SecretScalar::new(&mut sum);
    }
    let public = Point::<E>::generator() * &secret;
    if public != expected {
        return Err(RecoveryError::Mismatch);
    }
    let mut be = Zeroizing::new([0u8; 32]);
    be.copy_from_slice(&secret.as_ref().to_be_bytes());
    Ok(VaultKey {
        curve,
        secret: be,
        public_key: public.to_bytes(true).to_vec(),
    })
}

fn subtle_is_zero<E: EcCurve>(x: &Scalar<E>) -> subtle::Choice {
    subtle::ConstantTimeEq::ct_eq(x, &Scalar::zero())
}

/// The affine coordinates (big-endian) of a compressed public key of `curve`, as the files
/// carry them.
pub fn affine_coordinates(curve: Curve, compressed: &[u8]) -> Result<([u8; 32], [u8; 32]), RecoveryError> {
    let bad = || RecoveryError::Format(format!("not a {} public key", curve.tss_name()));
    match curve {
        Curve::Secp256k1 | Curve::Bip340 => sec1_xy(
            &Point::<Secp256k1>::from_bytes(compressed)
                .map_err(|_| bad())?
                .to_bytes(false),
        ),
        Curve::Secp256r1 => sec1_xy(
            &Point::<Secp256r1>::from_bytes(compressed)
                .map_err(|_| bad())?
                .to_bytes(false),
        ),
        Curve::Ed25519 => {
            Point::<Ed25519>::from_bytes(compressed).map_err(|_| bad())?;
            edwards_xy(compressed).ok_or_else(bad)
        }
    }
}

fn sec1_xy(uncompressed: &[u8]) -> Result<([u8; 32], [u8; 32]), RecoveryError> {
    let (Some(x), Some(y)) = (uncompressed.get(1..33), uncompressed.get(33..65)) else {
        return Err(RecoveryError::Format(
            "the point at infinity has no coordinates".into(),
        ));
    };
    let mut out = ([0u8; 32], [0u8; 32]);
    out.0.copy_from_slice(x);
    out.1.copy_from_slice(y);
    Ok(out)
}

/// RFC 8032 §5.1.3 point decoding, for the x coordinate of a (valid, public) ed25519 point.
fn edwards_xy(compressed: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    let p = (BigUint::from(1u8) << 255) - BigUint::from(19u8);
    let mut y_le = compressed.to_vec();
    let sign = y_le.get(31)? >> 7;
    y_le[31] &= 0x7f;
    let y = BigUint::from_bytes_le(&y_le);
    if y >= p {
        return None;
    }
    // d = -121665 / 121666
    let inv = |v: &BigUint| v.modpow(&(&p - BigUint::from(2u8)), &p);
    let d = (&p - BigUint::from(121_665u32)) * inv(&BigUint::from(121_666u32)) % &p;
    let y2 = &y * &y % &p;
    let u = (&y2 + &p - BigUint::from(1u8)) % &p;
    let v = (&d * &y2 + BigUint::from(1u8)) % &p;
    let x2 = u * inv(&v) % &p;
    let mut x = x2.modpow(&((&p + BigUint::from(3u8)) >> 3), &p);
    if &x * &x % &p != x2 {
        let sqrt_m1 = BigUint::from(2u8).modpow(&((&p - BigUint::from(1u8)) >> 2), &p);
        x = x * sqrt_m1 % &p;
    }
    if &x * &x % &p != x2 {
        return None;
    }
    if x.bit(0) != (sign == 1) {
        x = (&p - x) % &p;
    }
    let be = |n: &BigUint| -> [u8; 32] {
        let bytes = n.to_bytes_be();
        let mut out = [0u8; 32];
        out[32 - bytes.len()..].copy_from_slice(&bytes);
        out
    };
    Some((be(&x), be(&y)))
}
