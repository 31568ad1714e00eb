//! The check of a signature a device reports, for every scheme, before the coordinator
//! accepts it. Each returns the reason a signature is refused (the device that sent it is
//! blamed).

use super::keys::taproot_output_key;
use crate::domain::Curve;

/// Verifies an ECDSA signature `r ‖ s` (64 bytes, low-s) with its recovery id over a
/// 32-byte prehash under the SEC1 `public_key`, on secp256k1 or P-256.
pub fn verify_ecdsa(
    curve: Curve,
    public_key: &[u8],
    digest: &[u8; 32],
    signature: &[u8],
    recovery_id: u8,
) -> std::result::Result<(), String> {
    // The same steps on each curve's RustCrypto types (`ecdsa` 0.16, as `k256` and `p256`
    // use it).
    macro_rules! verify_on {
        ($ecdsa:path) => {{
            use curve::signature::hazmat::PrehashVerifier;
            use $ecdsa as curve;
            let key = curve::VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|_| "vault key is not valid".to_owned())?;
            let sig = curve::Signature::from_slice(signature)
                .map_err(|_| "signature must be r‖s, 64 bytes".to_owned())?;
            if sig.normalize_s().is_some() {
                return Err("signature is not low-s normalised".to_owned());
            }
            key.verify_prehash(digest, &sig)
                .map_err(|_| "signature does not verify under the key".to_owned())?;
            let rid = ecdsa::RecoveryId::from_byte(recovery_id)
                .filter(|r| !r.is_x_reduced())
                .ok_or_else(|| "recoveryId must be 0 or 1".to_owned())?;
            let recovered = curve::VerifyingKey::recover_from_prehash(digest, &sig, rid)
                .map_err(|_| "recoveryId does not recover a key".to_owned())?;
            if recovered != key {
                return Err("recoveryId does not recover the signing key".to_owned());
            }
            Ok(())
        }};
    }
    match curve {
        Curve::Secp256k1 => verify_on!(k256::ecdsa),
        Curve::Secp256r1 => verify_on!(p256::ecdsa),
        Curve::Ed25519 | Curve::Bip340 => Err(format!("{} is not an ECDSA scheme", curve.as_str())),
    }
}

/// Verifies an Ed25519 signature (64 bytes, strict) over `message`.
pub fn verify_ed25519(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> std::result::Result<(), String> {
    let pk: [u8; 32] = public_key
        .try_into()
        .map_err(|_| "vault key is not 32 bytes".to_owned())?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| "vault key is not valid".to_owned())?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| "signature must be 64 bytes".to_owned())?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    key.verify_strict(message, &sig)
        .map_err(|_| "signature does not verify under the key".to_owned())
}

/// Verifies a BIP-340 signature (64 bytes) over `message` under the x-only vault key, or,
/// with `taproot` (`Some(merkle_root)`), under its BIP-341 Taproot output key.
pub fn verify_bip340(
    public_key: &[u8],
    taproot: Option<Option<&[u8; 32]>>,
    message: &[u8],
    signature: &[u8],
) -> std::result::Result<(), String> {
    let key = match taproot {
        None => public_key.to_vec(),
        Some(root) => taproot_output_key(public_key, root)
            .map_err(|e| e.message().to_owned())?
            .to_vec(),
    };
    let key =
        k256::schnorr::VerifyingKey::from_bytes(&key).map_err(|_| "vault key is not valid".to_owned())?;
    let sig =
        k256::schnorr::Signature::try_from(signature).map_err(|_| "signature must be 64 bytes".to_owned())?;
    key.verify_raw(message, &sig)
        .map_err(|_| "signature does not verify under the key".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::derive_child;

    #[test]
    fn ecdsa_on_both_curves_sign_verify_and_derive() {
        let digest = [9u8; 32];
        let (k1_key, k1_sig, k1_rid) = {
            let sk = k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
            let (sig, rid) = sk.sign_prehash_recoverable(&digest).unwrap();
            assert!(sig.normalize_s().is_none(), "k256 signs low-s");
            let key = sk.verifying_key().to_encoded_point(true).as_bytes().to_vec();
            (key, sig.to_bytes().to_vec(), rid.to_byte())
        };
        let (r1_key, r1_sig, r1_rid) = {
            let sk = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
            let (sig, rid) = sk.sign_prehash_recoverable(&digest).unwrap();
            let (sig, rid) = match sig.normalize_s() {
                Some(low) => (low, ecdsa::RecoveryId::from_byte(rid.to_byte() ^ 1).unwrap()),
                None => (sig, rid),
            };
            let key = sk.verifying_key().to_encoded_point(true).as_bytes().to_vec();
            (key, sig.to_bytes().to_vec(), rid.to_byte())
        };
        for (curve, key, sig, rid) in [
            (Curve::Secp256k1, &k1_key, &k1_sig, k1_rid),
            (Curve::Secp256r1, &r1_key, &r1_sig, r1_rid),
        ] {
            verify_ecdsa(curve, key, &digest, sig, rid).unwrap();
            assert!(
                verify_ecdsa(curve, key, &[8u8; 32], sig, rid).is_err(),
                "{curve:?}"
            );
            assert!(
                verify_ecdsa(curve, key, &digest, sig, rid ^ 1).is_err(),
                "{curve:?}"
            );
            let child = derive_child(curve, key, &[1u8; 32], &[0, 1]).unwrap();
            assert!(
                verify_ecdsa(curve, &child, &digest, sig, rid).is_err(),
                "{curve:?}"
            );
        }
        // A key of one curve is not a key of the other.
        assert!(verify_ecdsa(Curve::Secp256r1, &k1_key, &digest, &k1_sig, k1_rid).is_err());
    }

    #[test]
    fn bip340_with_and_without_the_taproot_tweak() {
        let sk = k256::schnorr::SigningKey::from_bytes(&[5u8; 32]).unwrap();
        let key = sk.verifying_key().to_bytes().to_vec();
        let sig = sk.sign_raw(b"a message", &[0u8; 32]).unwrap().to_bytes();
        verify_bip340(&key, None, b"a message", &sig).unwrap();
        assert!(verify_bip340(&key, None, b"another", &sig).is_err());
        assert!(verify_bip340(&key, Some(None), b"a message", &sig).is_err());
    }
}
