//! The demo's own checks of what the system produced, with the curve libraries directly
//! (not the coordinator's or the engine's code): a secp256k1 signature verifies under the
//! vault key and recovers to it, an Ethereum transaction is the one requested and recovers to
//! the vault's address, an Ed25519 signature verifies strictly, a P-256 signature verifies
//! and recovers, a BIP-340 signature verifies under the vault key or its Taproot output key.
//!
//! `scripts/check-demo.py` checks the same JSON again with Python's `cryptography` and
//! `eth_account`, outside the Rust code base.

use alloy_consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Decodable2718 as _;
use alloy_primitives::{Address, TxKind, U256};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest as _, Keccak256};

/// The Ethereum address (`0x…`, lowercase hex) of a secp256k1 key.
pub(crate) fn eth_address(key: &VerifyingKey) -> String {
    let point = key.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    format!("0x{}", hex::encode(&hash[12..]))
}

/// The transaction the demo asks to sign: 0.01 ETH to `0x…dEaD` on mainnet (chain id 1).
/// It is never broadcast (the demo's coordinator has no RPC endpoint).
pub(crate) fn demo_transaction(nonce: u64) -> TxEip1559 {
    TxEip1559 {
        chain_id: 1,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::from_slice(
            &hex::decode("000000000000000000000000000000000000dead").unwrap_or_default(),
        )),
        value: U256::from(10_000_000_000_000_000u64),
        access_list: Default::default(),
        input: Default::default(),
    }
}

/// The unsigned encoding `0x02 ‖ rlp(…)` that is signed (its Keccak-256 is the digest).
pub(crate) fn unsigned_bytes(tx: &TxEip1559) -> Vec<u8> {
    tx.encoded_for_signing()
}

fn parse_signature(signature: &[u8], recovery_id: u8) -> Result<(Signature, RecoveryId), String> {
    let sig =
        Signature::from_slice(signature).map_err(|_| "the signature is not r ‖ s of 64 bytes".to_owned())?;
    if sig.normalize_s().is_some() {
        return Err("the signature is not low-s".into());
    }
    let recid = RecoveryId::from_byte(recovery_id)
        .ok_or_else(|| format!("recovery id {recovery_id} is not 0 or 1"))?;
    Ok((sig, recid))
}

/// Defines `$name`: checks an ECDSA signature of `digest` on the curve of the RustCrypto crate
/// `$crate_` under the SEC1 `public_key` (low-s, as every vsigner ECDSA signature), and that
/// `recovery_id` recovers that key.
macro_rules! ecdsa_check {
    ($(#[$doc:meta])* $name:ident, $crate_:ident, $curve:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(public_key: &[u8], digest: &[u8; 32], signature: &[u8], recovery_id: u8) -> Result<(), String> {
            use $crate_::ecdsa::signature::hazmat::PrehashVerifier as _;
            use $crate_::ecdsa::{Signature, VerifyingKey};
            let key = VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|_| concat!("the vault key is not a ", $curve, " point").to_owned())?;
            let sig = Signature::from_slice(signature)
                .map_err(|_| "the signature is not r ‖ s of 64 bytes".to_owned())?;
            if sig.normalize_s().is_some() {
                return Err("the signature is not low-s".into());
            }
            key.verify_prehash(digest, &sig)
                .map_err(|_| "the signature does not verify under the vault key".to_owned())?;
            let recid = ecdsa::RecoveryId::from_byte(recovery_id)
                .ok_or_else(|| format!("recovery id {recovery_id} is not 0 or 1"))?;
            let recovered = VerifyingKey::recover_from_prehash(digest, &sig, recid)
                .map_err(|_| "no key recovers from the signature".to_owned())?;
            if recovered != key {
                return Err("the recovery id recovers another key".into());
            }
            Ok(())
        }
    };
}

ecdsa_check!(
    /// A secp256k1 signature (see [`ecdsa_check`]).
    secp256k1,
    k256,
    "secp256k1"
);
ecdsa_check!(
    /// A P-256 signature (see [`ecdsa_check`]).
    p256,
    p256,
    "P-256"
);

/// Checks that `raw_signed` (the coordinator's signed transaction) is `requested` with the
/// signature `signature`/`recovery_id`, and that its sender is `address`.
pub(crate) fn eth_transaction(
    requested: &TxEip1559,
    raw_signed: &[u8],
    signature: &[u8],
    recovery_id: u8,
    address: &str,
) -> Result<(), String> {
    let envelope = TxEnvelope::decode_2718_exact(raw_signed)
        .map_err(|e| format!("the signed transaction does not decode: {e}"))?;
    let TxEnvelope::Eip1559(signed) = envelope else {
        return Err("the signed transaction is not EIP-1559".into());
    };
    if signed.tx() != requested {
        return Err("the signed transaction is not the requested one".into());
    }
    let (sig, recid) = parse_signature(signature, recovery_id)?;
    let s = signed.signature();
    if s.r().to_be_bytes::<32>()[..] != sig.r().to_bytes()[..]
        || s.s().to_be_bytes::<32>()[..] != sig.s().to_bytes()[..]
        || s.v() != (recovery_id == 1)
    {
        return Err("the transaction carries another signature than the one submitted".into());
    }
    let hash: [u8; 32] = signed.signature_hash().0;
    if hash[..] != Keccak256::digest(unsigned_bytes(requested))[..] {
        return Err("the transaction's signing hash is not Keccak-256 of its unsigned encoding".into());
    }
    let sender = VerifyingKey::recover_from_prehash(&hash, &sig, recid)
        .map_err(|_| "no key recovers from the transaction's signature".to_owned())?;
    let sender = eth_address(&sender);
    if !sender.eq_ignore_ascii_case(address) {
        return Err(format!(
            "the transaction's sender is {sender}, not the vault address {address}"
        ));
    }
    Ok(())
}

/// Checks an Ed25519 signature (RFC 8032, strict) of `message` under `public_key`.
pub(crate) fn ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| "the vault key is not 32 bytes".to_owned())?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| "the vault key is not an Ed25519 point".to_owned())?;
    let sig = ed25519_dalek::Signature::from_slice(signature)
        .map_err(|_| "the signature is not 64 bytes".to_owned())?;
    key.verify_strict(message, &sig)
        .map_err(|_| "the signature does not verify under the vault key".to_owned())
}

/// The ed25519 child key at `path` of `public_key` with chain code `chain_code`
/// (`hd-wallet`'s Edwards derivation).
pub(crate) fn ed25519_child(
    public_key: &[u8],
    chain_code: &[u8; 32],
    path: &[u32],
) -> Result<Vec<u8>, String> {
    use hd_wallet::HdWallet as _;
    let parent = hd_wallet::ExtendedPublicKey::<generic_ec::curves::Ed25519> {
        public_key: generic_ec::Point::from_bytes(public_key)
            .map_err(|_| "the vault key is not an Ed25519 point".to_owned())?,
        chain_code: *chain_code,
    };
    let indexes = path
        .iter()
        .map(|i| hd_wallet::NonHardenedIndex::try_from(*i).map_err(|_| format!("index {i} is hardened")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(
        hd_wallet::Edwards::derive_child_public_key_with_path(&parent, indexes)
            .public_key
            .to_bytes(true)
            .to_vec(),
    )
}

/// Checks a BIP-340 signature of `message` under the 32-byte x-only `public_key`.
pub(crate) fn bip340(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    let key = k256::schnorr::VerifyingKey::from_bytes(public_key)
        .map_err(|_| "the key is not a BIP-340 x-only key".to_owned())?;
    let sig = k256::schnorr::Signature::try_from(signature)
        .map_err(|_| "the signature is not 64 bytes".to_owned())?;
    key.verify_raw(message, &sig)
        .map_err(|_| "the signature does not verify under the key".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    fn signed(key: &SigningKey, digest: &[u8; 32]) -> (Vec<u8>, u8) {
        let (sig, recid) = key.sign_prehash_recoverable(digest).unwrap();
        (sig.to_bytes().to_vec(), recid.to_byte())
    }

    #[test]
    fn secp256k1_signatures_are_checked_with_their_recovery_id() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = key.verifying_key().to_encoded_point(true);
        let digest = [9u8; 32];
        let (sig, recid) = signed(&key, &digest);
        assert_eq!(secp256k1(pk.as_bytes(), &digest, &sig, recid), Ok(()));
        assert!(secp256k1(pk.as_bytes(), &digest, &sig, 1 - recid).is_err());
        assert!(secp256k1(pk.as_bytes(), &[8u8; 32], &sig, recid).is_err());
        // The high-s twin verifies mathematically but is refused.
        let s = Signature::from_slice(&sig).unwrap();
        let high = Signature::from_scalars(s.r(), -*s.s()).unwrap();
        assert_eq!(
            secp256k1(pk.as_bytes(), &digest, &high.to_bytes(), recid ^ 1),
            Err("the signature is not low-s".into())
        );
    }

    #[test]
    fn a_transaction_recovers_to_the_signer_address_only() {
        let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let address = eth_address(key.verifying_key());
        let tx = demo_transaction(0);
        let hash: [u8; 32] = Keccak256::digest(unsigned_bytes(&tx)).into();
        let (sig, recid) = signed(&key, &hash);
        let alloy_sig = alloy_primitives::Signature::new(
            U256::from_be_slice(&sig[..32]),
            U256::from_be_slice(&sig[32..]),
            recid == 1,
        );
        let mut raw = Vec::new();
        alloy_eips::eip2718::Encodable2718::encode_2718(
            &TxEnvelope::Eip1559(tx.clone().into_signed(alloy_sig)),
            &mut raw,
        );
        assert_eq!(eth_transaction(&tx, &raw, &sig, recid, &address), Ok(()));
        // Another transaction, another signature, another address: each refused.
        assert!(eth_transaction(&demo_transaction(1), &raw, &sig, recid, &address).is_err());
        let other = SigningKey::from_slice(&[6u8; 32]).unwrap();
        assert!(eth_transaction(&tx, &raw, &sig, recid, &eth_address(other.verifying_key())).is_err());
        let (other_sig, other_recid) = signed(&key, &[1u8; 32]);
        assert!(eth_transaction(&tx, &raw, &other_sig, other_recid, &address).is_err());
        // Known vector: the address of private key 1.
        let one = SigningKey::from_slice(&{
            let mut k = [0u8; 32];
            k[31] = 1;
            k
        })
        .unwrap();
        assert_eq!(
            eth_address(one.verifying_key()),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn ed25519_signatures_are_checked_strictly() {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let pk = key.verifying_key().to_bytes();
        let sig = key.sign(b"hello").to_bytes();
        assert_eq!(ed25519(&pk, b"hello", &sig), Ok(()));
        assert!(ed25519(&pk, b"hellO", &sig).is_err());
        assert!(ed25519(&pk[..31], b"hello", &sig).is_err());
    }
}
