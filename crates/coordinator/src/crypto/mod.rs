//! Pure cryptographic checks used by the domain: key and payload parsing, signing
//! digests, HD derivation, signature verification, Ethereum transaction assembly.
//! No I/O.
//!
//! Vault keys of every scheme (their forms, child keys, Taproot output keys and addresses)
//! are in [`keys`]; the verification of a signature a device reports, per scheme, in
//! [`signatures`]. Everything here uses reviewed crates (`k256`, `p256`, `ed25519-dalek`,
//! `hd-wallet`, `bech32`); nothing is a primitive of its own.

mod keys;
mod signatures;

pub use keys::{
    check_bip340_public_key, check_ed25519_public_key, derive_child, normalize_sec1_public_key,
    taproot_address, taproot_output_key, TaprootNetwork,
};
pub use signatures::{verify_bip340, verify_ecdsa, verify_ed25519};

use alloy_consensus::transaction::{RlpEcdsaEncodableTx, SignableTransaction};
use alloy_consensus::TxEip1559;
use alloy_primitives::U256;
use sha3::{Digest as _, Keccak256};

use crate::error::{Error, ErrorCode, Result};

/// keccak256 of `bytes`.
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

/// Decodes hex with or without a `0x` prefix; `what` names the field in the error.
pub fn decode_hex(what: &str, s: &str) -> Result<Vec<u8>> {
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    hex::decode(s).map_err(|_| Error::invalid_input(format!("{what} is not valid hex")))
}

/// Decodes hex that must be exactly `N` bytes.
pub fn decode_hex_array<const N: usize>(what: &str, s: &str, code: ErrorCode) -> Result<[u8; N]> {
    let bytes = decode_hex(what, s).map_err(|e| Error::new(code, e.message().to_owned()))?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| Error::new(code, format!("{what} must be {N} bytes (hex), got {len} bytes")))
}

/// The key-set hash of a generation of shares: SHA-256 over the concatenation, in
/// party (share-index) order, of every party's public key share in compressed
/// encoding (secp256k1: 33-byte SEC1 compressed; ed25519: 32 bytes). Devices compute
/// it after keygen/reshare and every submission must agree on it.
pub fn key_set_hash<S: AsRef<[u8]>>(public_shares: &[S]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for s in public_shares {
        h.update(s.as_ref());
    }
    h.finalize().into()
}

/// Checks an Ed25519 identity public key (32 bytes, a valid, non-weak point).
pub fn check_ed25519_identity_key(bytes: &[u8; 32]) -> Result<()> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| {
        Error::invalid_input("identitySigningKey is not a valid Ed25519 public key (32 bytes, hex)")
    })?;
    if key.is_weak() {
        return Err(Error::invalid_input(
            "identitySigningKey is a weak (small-order) Ed25519 key",
        ));
    }
    Ok(())
}

/// Checks an X25519 identity public key: not a low-order point (which would make
/// every shared secret with it predictable). A clamped scalar is a multiple of the
/// cofactor 8, so exactly the low-order points (in any encoding, including the
/// non-canonical ones) map to the all-zero output.
pub fn check_x25519_identity_key(bytes: &[u8; 32]) -> Result<()> {
    if x25519_dalek::x25519([0x42; 32], *bytes) == [0u8; 32] {
        return Err(Error::invalid_input(
            "identityEncryptionKey is a small-order X25519 point",
        ));
    }
    Ok(())
}

/// Parses a non-hardened BIP-32 path `m/0/1` (also `m`), returning the indexes.
pub fn parse_derivation_path(path: &str) -> Result<Vec<u32>> {
    let err = |why: &str| {
        Error::new(
            ErrorCode::InvalidDerivationPath,
            format!("derivationPath {path:?} {why}; expected non-hardened indexes like m/0/1"),
        )
    };
    let mut parts = path.split('/');
    if parts.next() != Some("m") {
        return Err(err("must start with m"));
    }
    let mut out = Vec::new();
    for part in parts {
        if part.ends_with('\'') || part.ends_with('h') || part.ends_with('H') {
            return Err(err(
                "contains a hardened index, which cannot be derived from the public key",
            ));
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("contains a component that is not a number"));
        }
        let index: u32 = part
            .parse()
            .map_err(|_| err("contains an index that is too large"))?;
        if index >= 1 << 31 {
            return Err(err("contains an index ≥ 2^31 (hardened)"));
        }
        out.push(index);
    }
    if out.len() > 255 {
        return Err(err("is deeper than 255 levels"));
    }
    Ok(out)
}

/// The EIP-191 personal-message hash:
/// `keccak256("\x19Ethereum Signed Message:\n" ‖ decimal(len(message)) ‖ message)`.
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    let mut buf = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    buf.extend_from_slice(message);
    keccak256(&buf)
}

/// Decodes an unsigned EIP-1559 transaction `0x02 ‖ rlp([chain_id, nonce, …])` and
/// checks that it re-encodes to exactly the same bytes (so the digest the devices sign,
/// keccak256 of these bytes, is the transaction's signing hash).
pub fn decode_unsigned_eip1559(bytes: &[u8]) -> Result<TxEip1559> {
    let bad = |why: &str| Error::new(ErrorCode::InvalidPayload, format!("ethTx {why}"));
    let rest = match bytes.split_first() {
        Some((0x02, rest)) => rest,
        _ => return Err(bad("must be an unsigned EIP-1559 transaction starting with 0x02")),
    };
    let mut buf = rest;
    let tx = <TxEip1559 as alloy_rlp::Decodable>::decode(&mut buf)
        .map_err(|e| bad(&format!("is not a valid EIP-1559 RLP encoding ({e})")))?;
    if !buf.is_empty() {
        return Err(bad("has trailing bytes after the RLP list"));
    }
    if tx.encoded_for_signing() != bytes {
        return Err(bad("is not in canonical encoding"));
    }
    Ok(tx)
}

/// Assembles the signed raw EIP-1559 transaction `0x02 ‖ rlp([…, y_parity, r, s])`.
pub fn assemble_signed_eip1559(tx: &TxEip1559, signature: &[u8; 64], recovery_id: u8) -> Vec<u8> {
    let (r, s) = signature.split_at(32);
    let sig =
        alloy_primitives::Signature::new(U256::from_be_slice(r), U256::from_be_slice(s), recovery_id == 1);
    let mut out = Vec::new();
    tx.eip2718_encode(&sig, &mut out);
    out
}

/// The Ethereum address (`0x…`, lowercase hex) of a secp256k1 public key.
pub fn eth_address(public_key: &[u8]) -> Option<String> {
    let key = k256::PublicKey::from_sec1_bytes(public_key).ok()?;
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let uncompressed = key.to_encoded_point(false);
    let hash = keccak256(uncompressed.as_bytes().get(1..)?);
    Some(format!("0x{}", hex::encode(hash.get(12..)?)))
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut out = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_identity_keys_are_refused() {
        // Low-order Curve25519 u-coordinates (canonical and non-canonical encodings).
        for bad in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            // The same with the (ignored) top bit set.
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "0000000000000000000000000000000000000000000000000000000000000080",
        ] {
            let key: [u8; 32] = hex::decode(bad).unwrap().try_into().unwrap();
            assert!(check_x25519_identity_key(&key).is_err(), "{bad}");
        }
        let mut base = [0u8; 32];
        base[0] = 9;
        check_x25519_identity_key(&base).unwrap();
        let real = x25519_dalek::x25519([7u8; 32], x25519_dalek::X25519_BASEPOINT_BYTES);
        check_x25519_identity_key(&real).unwrap();
        // Small-order Ed25519 points (the identity and a point of order 4) are weak.
        for bad in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        ] {
            let key: [u8; 32] = hex::decode(bad).unwrap().try_into().unwrap();
            assert!(check_ed25519_identity_key(&key).is_err(), "{bad}");
        }
    }

    #[test]
    fn derivation_paths() {
        assert_eq!(parse_derivation_path("m").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_derivation_path("m/0/1").unwrap(), vec![0, 1]);
        for bad in ["", "0/1", "m/0'", "m/1h", "m//1", "m/2147483648", "m/x"] {
            assert_eq!(
                parse_derivation_path(bad).unwrap_err().code(),
                ErrorCode::InvalidDerivationPath,
                "{bad}"
            );
        }
    }

    #[test]
    fn eip191_known_vector() {
        // keccak256("\x19Ethereum Signed Message:\n5hello")
        assert_eq!(
            hex::encode(eip191_hash(b"hello")),
            "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
        );
    }
}
