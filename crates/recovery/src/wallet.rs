//! What a wallet needs of a rebuilt vault key, per scheme, in the formats wallets import:
//!
//! | scheme | given |
//! |---|---|
//! | ECDSA secp256k1 | the Ethereum address (EIP-55), an encrypted Ethereum keystore (v3: scrypt, AES-128-CTR, Keccak-256 MAC; the passphrase is the caller's), the Bitcoin WIF (compressed, mainnet) |
//! | ECDSA P-256 | a PKCS#8 PEM private key |
//! | EdDSA ed25519 | an RFC 8032 expanded key: the secret scalar (32 bytes little-endian) and a fresh secret nonce prefix; a threshold EdDSA key has no seed, so wallets that import only seeds cannot take it, and tools that clamp an imported scalar get another key |
//! | BIP-340 | the x-only public key, the secret key (32 bytes big-endian) and its WIF |
//!
//! The keystore's scrypt parameters are geth's standard ones (n = 2^18, r = 8, p = 1).

use aes::cipher::{KeyIvInit, StreamCipher};
use sha3::{Digest, Keccak256};
use zeroize::Zeroizing;

use crate::{Curve, RecoveryError, VaultKey};

/// scrypt's log2(n) for keystores: geth's "standard" 2^18.
pub const KEYSTORE_SCRYPT_LOG_N: u8 = 18;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// The EIP-55 address of an uncompressed (or compressed) secp256k1 public key.
pub fn ethereum_address(public_key: &[u8]) -> Result<String, RecoveryError> {
    let point = k256::PublicKey::from_sec1_bytes(public_key)
        .map_err(|_| RecoveryError::Format("not a secp256k1 public key".into()))?;
    let uncompressed = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&point, false);
    let hash = Keccak256::digest(&uncompressed.as_bytes()[1..]);
    let hex_address = hex::encode(&hash[12..]);
    let checksum = Keccak256::digest(hex_address.as_bytes());
    let mut out = String::from("0x");
    for (i, c) in hex_address.chars().enumerate() {
        let nibble = (checksum[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    Ok(out)
}

/// The Bitcoin WIF (mainnet, compressed public key) of a secp256k1 secret.
pub fn wif(secret: &[u8; 32]) -> Zeroizing<String> {
    let mut payload = Zeroizing::new(Vec::with_capacity(34));
    payload.push(0x80);
    payload.extend_from_slice(secret);
    payload.push(0x01);
    Zeroizing::new(bs58::encode(payload.as_slice()).with_check().into_string())
}

/// An Ethereum keystore v3 document encrypting `secret` under `passphrase`.
pub fn ethereum_keystore(
    key: &VaultKey,
    passphrase: &str,
    log_n: u8,
) -> Result<serde_json::Value, RecoveryError> {
    let address = ethereum_address(&key.public_key)?;
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
    let params = scrypt::Params::new(log_n, 8, 1, 32)
        .map_err(|e| RecoveryError::Crypto(format!("scrypt parameters: {e}")))?;
    let mut derived = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), &salt, &params, derived.as_mut())
        .map_err(|e| RecoveryError::Crypto(format!("scrypt: {e}")))?;
    let mut ciphertext = key.secret.to_vec();
    let mut cipher = Aes128Ctr::new(derived[..16].into(), (&iv).into());
    cipher.apply_keystream(&mut ciphertext);
    let mut mac_input = Zeroizing::new(derived[16..32].to_vec());
    mac_input.extend_from_slice(&ciphertext);
    let mac = Keccak256::digest(mac_input.as_slice());
    let mut id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&id[0..4]),
        hex::encode(&id[4..6]),
        hex::encode(&id[6..8]),
        hex::encode(&id[8..10]),
        hex::encode(&id[10..16])
    );
    Ok(serde_json::json!({
        "version": 3,
        "id": uuid,
        "address": address.trim_start_matches("0x").to_ascii_lowercase(),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": hex::encode(iv)},
            "ciphertext": hex::encode(&ciphertext),
            "kdf": "scrypt",
            "kdfparams": {"dklen": 32, "n": 1u64 << log_n, "r": 8, "p": 1, "salt": hex::encode(salt)},
            "mac": hex::encode(mac),
        }
    }))
}

/// A PKCS#8 PEM of a P-256 secret.
pub fn p256_pkcs8_pem(key: &VaultKey) -> Result<Zeroizing<String>, RecoveryError> {
    if key.curve != Curve::Secp256r1 {
        return Err(RecoveryError::Format("not a P-256 key".into()));
    }
    let secret = p256::SecretKey::from_slice(key.secret.as_ref())
        .map_err(|_| RecoveryError::Format("not a P-256 secret".into()))?;
    p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&secret, p256::pkcs8::LineEnding::LF)
        .map(|s| Zeroizing::new(s.to_string()))
        .map_err(|e| RecoveryError::Crypto(format!("PKCS#8: {e}")))
}

/// An RFC 8032 expanded ed25519 key for the vault key: the secret scalar (32 bytes,
/// little-endian) followed by a fresh random 32-byte nonce prefix. A threshold key never had a
/// seed, so this is the only form it can take. The prefix must stay secret (a known prefix
/// reveals the key from one signature), and the importing tool must take the scalar as it is:
/// one that clamps it (as a seed's hash is clamped) gets another key.
pub fn ed25519_expanded_key(key: &VaultKey) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    out[..32].copy_from_slice(key.secret.as_ref());
    out[..32].reverse();
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut out[32..]);
    out
}
