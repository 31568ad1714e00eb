//! The storage format of key material: a small header, then CBOR.
//!
//! ```text
//! "VSGN" ‖ format version (u16 BE) ‖ kind (u8) ‖ variant (u8) ‖ CBOR body
//! ```
//! The header lets a keystore tell what a blob is without decoding secrets, and lets a later
//! release read blobs written by this one: a version this build does not know is refused
//! with a clear error rather than misread. Bodies are the libraries' own serde forms
//! (`cggmp24` key shares and aux-info, `frost` key packages), so they stay readable as those
//! libraries promise.

use serde::{de::DeserializeOwned, Serialize};
use zeroize::Zeroizing;

use crate::ecdsa::{CurveKind, EcdsaCurve};
use crate::schnorr::SchemeKind;
use crate::Error;

const MAGIC: &[u8; 4] = b"VSGN";
/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 4 + 2 + 2;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// An ECDSA core share (output of keygen) on a curve.
    EcdsaCoreShare(CurveKind),
    /// ECDSA aux-info of one device in one device set.
    EcdsaAuxInfo,
    /// An unused ECDSA presignature.
    EcdsaPresignature(CurveKind),
    /// A FROST key share of a Schnorr scheme.
    SchnorrKeyShare(SchemeKind),
    /// A set of four safe primes for one aux-info run.
    PrimeSet,
}

impl Kind {
    pub(crate) fn ecdsa_core<E: EcdsaCurve>() -> Self {
        Kind::EcdsaCoreShare(E::KIND)
    }

    fn tags(self) -> [u8; 2] {
        let curve = |c: CurveKind| match c {
            CurveKind::Secp256k1 => 1,
            CurveKind::P256 => 2,
        };
        match self {
            Kind::EcdsaCoreShare(c) => [1, curve(c)],
            Kind::EcdsaAuxInfo => [2, 0],
            Kind::EcdsaPresignature(c) => [3, curve(c)],
            Kind::SchnorrKeyShare(SchemeKind::Ed25519) => [4, 1],
            Kind::SchnorrKeyShare(SchemeKind::Bip340) => [4, 2],
            Kind::PrimeSet => [5, 0],
        }
    }

    fn from_tags(tags: [u8; 2]) -> Option<Self> {
        let curve = |c: u8| match c {
            1 => Some(CurveKind::Secp256k1),
            2 => Some(CurveKind::P256),
            _ => None,
        };
        Some(match tags {
            [1, c] => Kind::EcdsaCoreShare(curve(c)?),
            [2, 0] => Kind::EcdsaAuxInfo,
            [3, c] => Kind::EcdsaPresignature(curve(c)?),
            [4, 1] => Kind::SchnorrKeyShare(SchemeKind::Ed25519),
            [4, 2] => Kind::SchnorrKeyShare(SchemeKind::Bip340),
            [5, 0] => Kind::PrimeSet,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::EcdsaCoreShare(c) => write!(f, "ecdsa-{}-key-share", c.as_str()),
            Kind::EcdsaAuxInfo => f.write_str("ecdsa-aux-info"),
            Kind::EcdsaPresignature(c) => write!(f, "ecdsa-{}-presignature", c.as_str()),
            Kind::SchnorrKeyShare(s) => write!(f, "{}-key-share", s.as_str()),
            Kind::PrimeSet => f.write_str("prime-set"),
        }
    }
}

/// Reads the header of a blob: its format version and kind. Never touches the body.
pub fn peek(bytes: &[u8]) -> Result<(u16, Kind), Error> {
    let bad = |reason: String| Error::Format {
        what: "key material",
        reason,
    };
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| bad(format!("{} bytes is shorter than the header", bytes.len())))?;
    if &header[..4] != MAGIC {
        return Err(bad("not a vsigner key-material blob (bad magic)".into()));
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    let kind = Kind::from_tags([header[6], header[7]])
        .ok_or_else(|| bad(format!("unknown kind tags {:?}", &header[6..8])))?;
    Ok((version, kind))
}

/// Encodes `value` as a blob of `kind`. The buffer is wiped when dropped.
pub(crate) fn encode<T: Serialize>(kind: Kind, value: &T) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&kind.tags());
    ciborium::into_writer(value, &mut *out).map_err(|e| Error::Format {
        what: "key material",
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes a blob that must be of `kind`.
pub(crate) fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, Error> {
    let (version, found) = peek(bytes)?;
    let bad = |reason: String| Error::Format {
        what: "key material",
        reason,
    };
    if version > FORMAT_VERSION || version == 0 {
        return Err(bad(format!(
            "format version {version} is not supported by this build (it reads up to {FORMAT_VERSION})"
        )));
    }
    if found != kind {
        return Err(bad(format!("expected a {kind}, found a {found}")));
    }
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    ciborium::from_reader(body).map_err(|e| bad(format!("{kind} body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let blob = encode(Kind::PrimeSet, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(peek(&blob).unwrap(), (FORMAT_VERSION, Kind::PrimeSet));
        let back: Vec<u32> = decode(Kind::PrimeSet, &blob).unwrap();
        assert_eq!(back, vec![1, 2, 3]);

        let err = decode::<Vec<u32>>(Kind::EcdsaAuxInfo, &blob)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected a ecdsa-aux-info, found a prime-set"),
            "{err}"
        );

        let mut future = blob.to_vec();
        future[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_be_bytes());
        let err = decode::<Vec<u32>>(Kind::PrimeSet, &future)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported by this build"), "{err}");

        assert!(peek(b"VSG").is_err());
        assert!(peek(b"XXXX\0\x01\x05\0").is_err());
        assert!(decode::<Vec<u32>>(Kind::PrimeSet, &blob[..blob.len() - 1]).is_err());
    }
}
