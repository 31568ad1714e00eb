//! The operator's disaster-recovery key pair: ML-KEM-768 (FIPS 203), in the PEM forms OpenSSL
//! ≥ 3.5 writes (`openssl genpkey -algorithm ML-KEM-768`, `openssl pkey -pubout`).
//!
//! - Public key: a SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`) with the algorithm
//!   id-alg-ml-kem-768 (2.16.840.1.101.3.4.4.2) and the 1184-byte encapsulation key.
//! - Private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`) whose privateKey is one of the three
//!   forms of `ML-KEM-PrivateKey`: the 64-byte seed `[0] IMPLICIT OCTET STRING`, the 2400-byte
//!   expanded key `OCTET STRING`, or `SEQUENCE { seed, expandedKey }` (OpenSSL's default). With
//!   both, the expanded key must be the one the seed derives.
//!
//! Parsing and key derivation are RustCrypto's `ml-kem` and `pkcs8`; the private key's bytes
//! live in zeroizing memory.

use ml_kem::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ml_kem::{KeyExport as _, MlKem768};
use pkcs8::der::{Decode, Reader, SliceReader, TagNumber};
use pkcs8::{LineEnding, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use crate::RecoveryError;

/// The encapsulation (public) key the devices encrypt `.dr` files to.
#[derive(Clone, PartialEq)]
pub struct DrPublicKey(pub(crate) ml_kem::EncapsulationKey<MlKem768>);

/// The decapsulation (private) key that opens `.dr` files. Never printed.
pub struct DrPrivateKey(pub(crate) ml_kem::DecapsulationKey<MlKem768>);

impl std::fmt::Debug for DrPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrPublicKey").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DrPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DrPrivateKey(<redacted>)")
    }
}

fn bad_key(what: &str, reason: impl std::fmt::Display) -> RecoveryError {
    RecoveryError::Key(format!("{what}: {reason}"))
}

impl DrPublicKey {
    /// Parses a PEM SubjectPublicKeyInfo of an ML-KEM-768 key.
    pub fn from_pem(pem: &str) -> Result<Self, RecoveryError> {
        ml_kem::EncapsulationKey::<MlKem768>::from_public_key_pem(pem.trim())
            .map(Self)
            .map_err(|e| {
                bad_key(
                    "not an ML-KEM-768 public key (PEM SubjectPublicKeyInfo, as `openssl pkey -pubout` writes)",
                    e,
                )
            })
    }

    /// The PEM SubjectPublicKeyInfo.
    pub fn to_pem(&self) -> Result<String, RecoveryError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad_key("cannot encode the public key", e))
    }

    /// The 1184-byte encapsulation key.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }

    /// A fresh shared secret for the holder of the private key: the 1088-byte ciphertext to
    /// send and the 32-byte secret (for other uses than `.dr` files, such as keystore
    /// backups to a recipient).
    pub fn encapsulate(&self) -> (Vec<u8>, Zeroizing<[u8; 32]>) {
        let mut m = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, m.as_mut());
        let (ct, shared) = self.0.encapsulate_deterministic(&(*m).into());
        (ct.as_slice().to_vec(), Zeroizing::new(<[u8; 32]>::from(shared)))
    }
}

impl DrPrivateKey {
    /// A new key pair from the operating system's randomness (tests and `vsigner recover
    /// keygen`; an operator may equally use OpenSSL).
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut());
        Self(ml_kem::DecapsulationKey::from_seed((*seed).into()))
    }

    /// Parses a PEM PKCS#8 ML-KEM-768 private key in any of its three forms.
    pub fn from_pem(pem: &str) -> Result<Self, RecoveryError> {
        let what =
            "not an ML-KEM-768 private key (PEM PKCS#8, as `openssl genpkey -algorithm ML-KEM-768` writes)";
        let (label, der) = pkcs8::SecretDocument::from_pem(pem.trim()).map_err(|e| bad_key(what, e))?;
        if label != "PRIVATE KEY" {
            return Err(bad_key(what, format!("the PEM block is {label:?}")));
        }
        let info = PrivateKeyInfoRef::from_der(der.as_bytes()).map_err(|e| bad_key(what, e))?;
        if info.algorithm.oid != <MlKem768 as ml_kem::pkcs8::AssociatedOid>::OID {
            return Err(bad_key(what, format!("the algorithm is {}", info.algorithm.oid)));
        }
        Self::from_private_key_choice(info.private_key.as_bytes()).map_err(|e| bad_key(what, e))
    }

    /// `ML-KEM-PrivateKey ::= CHOICE { seed [0] IMPLICIT OCTET STRING (64), expandedKey
    /// OCTET STRING (2400), both SEQUENCE { seed OCTET STRING (64), expandedKey OCTET
    /// STRING (2400) } }`.
    fn from_private_key_choice(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = SliceReader::new(bytes).map_err(|e| e.to_string())?;
        // The CHOICE by its first tag: [0] (0x80), OCTET STRING (0x04), SEQUENCE (0x30).
        let key = match bytes.first() {
            Some(0x80) => {
                let seed =
                    pkcs8::der::asn1::ContextSpecific::<&pkcs8::der::asn1::OctetStringRef>::decode_implicit(
                        &mut reader,
                        TagNumber(0),
                    )
                    .map_err(|e| e.to_string())?
                    .ok_or("no seed")?;
                Self::from_seed_bytes(seed.value.as_bytes())?
            }
            Some(0x04) => {
                let expanded =
                    <&pkcs8::der::asn1::OctetStringRef>::decode(&mut reader).map_err(|e| e.to_string())?;
                Self::from_expanded_bytes(expanded.as_bytes())?
            }
            Some(0x30) => {
                let (seed, expanded) = reader
                    .sequence(|r| {
                        let seed = <&pkcs8::der::asn1::OctetStringRef>::decode(r)?;
                        let expanded = <&pkcs8::der::asn1::OctetStringRef>::decode(r)?;
                        Ok((seed, expanded))
                    })
                    .map_err(|e: pkcs8::der::Error| e.to_string())?;
                let key = Self::from_seed_bytes(seed.as_bytes())?;
                #[allow(deprecated)]
                let derived = Zeroizing::new(ml_kem::ExpandedKeyEncoding::to_expanded_bytes(&key.0).to_vec());
                if derived.as_slice() != expanded.as_bytes() {
                    return Err("its expanded key is not the one its seed derives".to_owned());
                }
                key
            }
            _ => return Err("the private key is none of the seed, expanded and both forms".to_owned()),
        };
        reader.finish().map_err(|e| e.to_string())?;
        Ok(key)
    }

    fn from_seed_bytes(seed: &[u8]) -> Result<Self, String> {
        let seed: [u8; 64] = seed
            .try_into()
            .map_err(|_| format!("the seed has {} bytes, not 64", seed.len()))?;
        let seed = Zeroizing::new(seed);
        Ok(Self(ml_kem::DecapsulationKey::from_seed((*seed).into())))
    }

    // The expanded form is deprecated by `ml-kem` (the seed is the preferred encoding), but
    // OpenSSL can write it (`ml-kem.output_formats = priv-only`): read it.
    #[allow(deprecated)]
    fn from_expanded_bytes(expanded: &[u8]) -> Result<Self, String> {
        let array = expanded
            .try_into()
            .map_err(|_| format!("the expanded key has {} bytes, not 2400", expanded.len()))?;
        ml_kem::DecapsulationKey::from_expanded(array)
            .map(Self)
            .map_err(|_| "the expanded key is malformed".to_owned())
    }

    /// The PEM PKCS#8 of the seed form (what this crate writes; OpenSSL reads it).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, RecoveryError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| Zeroizing::new(s.to_string()))
            .map_err(|e| bad_key("cannot encode the private key", e))
    }

    /// The shared secret of a ciphertext made by [`DrPublicKey::encapsulate`] (another key
    /// gives another secret, by ML-KEM's implicit rejection: what it protects must be
    /// authenticated).
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>, RecoveryError> {
        use ml_kem::Decapsulate as _;
        let ct: ml_kem::Ciphertext<MlKem768> = ciphertext.try_into().map_err(|_| {
            RecoveryError::Format(format!(
                "an ML-KEM-768 ciphertext has 1088 bytes, not {}",
                ciphertext.len()
            ))
        })?;
        Ok(Zeroizing::new(<[u8; 32]>::from(self.0.decapsulate(&ct))))
    }

    /// The public key of this private key.
    pub fn public_key(&self) -> DrPublicKey {
        DrPublicKey(self.0.encapsulation_key().clone())
    }
}
