//! HD derivation (BIP-32 non-hardened, SLIP-10 compatible) and Ethereum addresses.
//!
//! Threshold keys can only derive non-hardened children: hardened derivation needs the
//! private key in one place. Paths are therefore plain lists of indices below 2³¹.

use std::str::FromStr;

use cggmp24::generic_ec::Point;
use sha3::{Digest, Keccak256};

use crate::ecdsa::Secp256k1;
use crate::Error;

const HARDENED: u32 = 1 << 31;

/// A non-hardened derivation path such as `m/0/1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// A path from its indices; every index must be below 2³¹ (non-hardened).
    pub fn new(indices: Vec<u32>) -> Result<Self, Error> {
        if let Some(i) = indices.iter().find(|i| **i >= HARDENED) {
            return Err(Error::invalid_args(format!(
                "derivation index {i} is hardened; threshold keys derive only non-hardened children (< 2^31)"
            )));
        }
        Ok(DerivationPath(indices))
    }

    /// The indices, root first.
    pub fn indices(&self) -> &[u32] {
        &self.0
    }

    /// Whether this is the root (`m`).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for DerivationPath {
    type Err = Error;

    /// Parses `m`, `m/0/1` or `0/1`. Hardened markers (`'`, `h`) are refused.
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let rest = s.strip_prefix('m').unwrap_or(s);
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(DerivationPath(Vec::new()));
        }
        let indices = rest
            .split('/')
            .map(|part| {
                if part.ends_with('\'') || part.ends_with('h') || part.ends_with('H') {
                    return Err(Error::invalid_args(format!(
                        "path component {part:?} is hardened; threshold keys derive only non-hardened children"
                    )));
                }
                part.parse::<u32>().map_err(|_| {
                    Error::invalid_args(format!("path component {part:?} is not a number (expected e.g. m/0/1)"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        DerivationPath::new(indices)
    }
}

impl std::fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("m")?;
        for i in &self.0 {
            write!(f, "/{i}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for DerivationPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<DerivationPath> for String {
    fn from(p: DerivationPath) -> String {
        p.to_string()
    }
}

/// The EIP-55 checksummed Ethereum address of a secp256k1 public key.
pub fn ethereum_address(public_key: &Point<Secp256k1>) -> String {
    let uncompressed = public_key.to_bytes(false);
    let bytes = uncompressed.as_bytes();
    let hash = Keccak256::digest(bytes.get(1..).unwrap_or_default());
    let address = hex::encode(hash.get(12..).unwrap_or_default());
    let checksum = hex::encode(Keccak256::digest(address.as_bytes()));
    let mut out = String::from("0x");
    for (c, h) in address.chars().zip(checksum.chars()) {
        if c.is_ascii_alphabetic() && h.to_digit(16).unwrap_or(0) >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Ethereum address of a SEC1-encoded (compressed or not) secp256k1 public key.
pub fn ethereum_address_from_sec1(public_key: &[u8]) -> Result<String, Error> {
    let point = Point::<Secp256k1>::from_bytes(public_key)
        .map_err(|_| Error::invalid_args("not a valid secp256k1 public key"))?;
    Ok(ethereum_address(&point))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_paths() {
        assert_eq!("m".parse::<DerivationPath>().unwrap().indices(), &[] as &[u32]);
        assert_eq!("m/0/1".parse::<DerivationPath>().unwrap().indices(), &[0, 1]);
        assert_eq!("7/8".parse::<DerivationPath>().unwrap().to_string(), "m/7/8");
        assert!("m/44'/60".parse::<DerivationPath>().is_err());
        assert!("m/1h".parse::<DerivationPath>().is_err());
        assert!("m/x".parse::<DerivationPath>().is_err());
        assert!("m/2147483648".parse::<DerivationPath>().is_err());
    }

    #[test]
    fn ethereum_address_of_known_key() {
        // Private key 1: public key G, address 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf.
        let g = Point::<Secp256k1>::generator().to_point();
        assert_eq!(ethereum_address(&g), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
    }
}
