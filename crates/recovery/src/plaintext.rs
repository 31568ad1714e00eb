//! The plaintext of a `.dr` file: one device's shares of one vault key, in the JSON shape of
//! io.finnet's tss-lib based signer, integers written in decimal as Go's `big.Int` does:
//!
//! ```text
//! {"Data":[{"Xi":<share>,"ShareID":<evaluation point>,
//!           "ECDSAPub":{"Curve":"secp256k1","Coords":[<X>,<Y>]}}],
//!  "VaultId":"…","Threshold":<signers needed − 1>}
//! ```
//!
//! One entry per share the device holds (a weighted device holds several). `EDDSAPub` in
//! place of `ECDSAPub` for ed25519, with the affine Edwards coordinates; P-256 is `"P-256"`
//! (Go's name) and BIP-340 keys are `ECDSAPub` on secp256k1. `Threshold` is tss-lib's:
//! the polynomial's degree, one less than the number of shares a signature needs.
//!
//! The secret shares never pass through a big-integer type: decimal text is converted to and
//! from 32-byte big-endian arrays held in zeroizing memory.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::{Curve, RecoveryError};

/// The most shares a vault can have (a reading limit: the files are not authenticated).
pub const MAX_SHARES: u32 = 1024;

/// A 32-byte big-endian integer that is a secret (a share).
pub type SecretBytes = Zeroizing<[u8; 32]>;

/// One share.
#[derive(Clone)]
pub struct Share {
    /// The evaluation point (`ShareID`), big-endian.
    pub id: [u8; 32],
    /// The share (`Xi`), big-endian.
    pub value: SecretBytes,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("id", &hex_trimmed(&self.id))
            .field("value", &"<redacted>")
            .finish()
    }
}

fn hex_trimmed(b: &[u8]) -> String {
    let s = hex::encode(b);
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".to_owned()
    } else {
        t.to_owned()
    }
}

/// A device's shares of one vault key.
#[derive(Debug, Clone)]
pub struct Shares {
    /// The vault.
    pub vault_id: String,
    /// The curve.
    pub curve: Curve,
    /// Shares a signature needs (tss-lib's `Threshold` + 1).
    pub threshold: u32,
    /// The vault's public key as the file gives it: the affine coordinates.
    pub public_key: ([u8; 32], [u8; 32]),
    /// The device's shares.
    pub shares: Vec<Share>,
}

#[derive(Serialize, Deserialize)]
struct RawPlain<'a> {
    #[serde(rename = "Data", borrow)]
    data: Vec<RawEntry<'a>>,
    #[serde(rename = "VaultId")]
    vault_id: String,
    #[serde(rename = "Threshold", borrow)]
    threshold: &'a RawValue,
}

#[derive(Serialize, Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "Xi", borrow)]
    xi: &'a RawValue,
    #[serde(rename = "ShareID", borrow)]
    share_id: &'a RawValue,
    #[serde(rename = "ECDSAPub", borrow, default, skip_serializing_if = "Option::is_none")]
    ecdsa_pub: Option<RawPoint<'a>>,
    #[serde(rename = "EDDSAPub", borrow, default, skip_serializing_if = "Option::is_none")]
    eddsa_pub: Option<RawPoint<'a>>,
}

#[derive(Serialize, Deserialize)]
struct RawPoint<'a> {
    #[serde(rename = "Curve")]
    curve: String,
    #[serde(rename = "Coords", borrow)]
    coords: Vec<&'a RawValue>,
}

/// `digits` (a JSON integer, decimal) as a 32-byte big-endian integer.
pub(crate) fn be_from_decimal(what: &str, digits: &str) -> Result<SecretBytes, RecoveryError> {
    let bad = |why: &str| RecoveryError::Format(format!("{what} is not {why}"));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("a non-negative integer"));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for d in digits.bytes() {
        // out = out * 10 + d, from the least significant byte.
        let mut carry = u16::from(d - b'0');
        for byte in out.iter_mut().rev() {
            let v = u16::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return Err(bad("below 2^256"));
        }
    }
    Ok(out)
}

/// A 32-byte big-endian integer in decimal.
pub(crate) fn decimal_from_be(be: &[u8; 32]) -> Zeroizing<String> {
    let mut n = Zeroizing::new(*be);
    let mut digits = Zeroizing::new(Vec::with_capacity(78));
    loop {
        // n, remainder = n / 10, n % 10, from the most significant byte.
        let mut rem = 0u16;
        for byte in n.iter_mut() {
            let v = (rem << 8) | u16::from(*byte);
            *byte = (v / 10) as u8;
            rem = v % 10;
        }
        digits.push(b'0' + rem as u8);
        if n.iter().all(|b| *b == 0) {
            break;
        }
    }
    digits.reverse();
    Zeroizing::new(String::from_utf8_lossy(&digits).into_owned())
}

fn small(what: &str, raw: &RawValue) -> Result<u32, RecoveryError> {
    raw.get()
        .parse()
        .map_err(|_| RecoveryError::Format(format!("{what} is not a small non-negative integer")))
}

impl Shares {
    /// Parses a decrypted plaintext.
    pub fn parse(plaintext: &[u8], curve: Curve) -> Result<Self, RecoveryError> {
        let raw: RawPlain<'_> = serde_json::from_slice(plaintext).map_err(|e| {
            RecoveryError::Format(format!("the decrypted shares are not the expected JSON: {e}"))
        })?;
        let degree = small("Threshold", raw.threshold)?;
        if degree >= MAX_SHARES {
            return Err(RecoveryError::Format(format!(
                "Threshold {degree} is not below the {MAX_SHARES} shares a vault can have"
            )));
        }
        if raw.data.is_empty() {
            return Err(RecoveryError::Format(
                "the file holds no share (Data is empty)".into(),
            ));
        }
        let mut public_key = None;
        let mut shares = Vec::with_capacity(raw.data.len());
        for entry in &raw.data {
            let point = match (curve, &entry.ecdsa_pub, &entry.eddsa_pub) {
                (Curve::Ed25519, None, Some(p)) => p,
                (Curve::Ed25519, _, _) => {
                    return Err(RecoveryError::Format(
                        "an ed25519 share must carry EDDSAPub only".into(),
                    ))
                }
                (_, Some(p), None) => p,
                _ => {
                    return Err(RecoveryError::Format(
                        "an ECDSA share must carry ECDSAPub only".into(),
                    ))
                }
            };
            if point.curve != curve.tss_name() {
                return Err(RecoveryError::Format(format!(
                    "the public key is on {:?}, not {}",
                    point.curve,
                    curve.tss_name()
                )));
            }
            let [x, y] = point.coords[..] else {
                return Err(RecoveryError::Format("Coords must hold X and Y".into()));
            };
            let xy = (*be_from_decimal("X", x.get())?, *be_from_decimal("Y", y.get())?);
            match &public_key {
                None => public_key = Some(xy),
                Some(known) if *known == xy => {}
                Some(_) => {
                    return Err(RecoveryError::Format(
                        "the shares of one file name different public keys".into(),
                    ))
                }
            }
            shares.push(Share {
                id: *be_from_decimal("ShareID", entry.share_id.get())?,
                value: be_from_decimal("Xi", entry.xi.get())?,
            });
        }
        Ok(Self {
            vault_id: raw.vault_id,
            curve,
            threshold: degree + 1,
            public_key: public_key.ok_or_else(|| RecoveryError::Format("no public key".into()))?,
            shares,
        })
    }

    /// The plaintext's JSON (the secret digits in zeroizing memory).
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
        let (x, y) = (
            decimal_from_be(&self.public_key.0),
            decimal_from_be(&self.public_key.1),
        );
        let point = format!(
            "{{\"Curve\":{},\"Coords\":[{},{}]}}",
            serde_json::Value::from(self.curve.tss_name()),
            x.as_str(),
            y.as_str()
        );
        let key = if self.curve == Curve::Ed25519 {
            "EDDSAPub"
        } else {
            "ECDSAPub"
        };
        // Sized once: a growing buffer would leave copies of the secret digits behind.
        let mut out = Zeroizing::new(Vec::with_capacity(
            128 + self.vault_id.len() + self.shares.len() * (2 * 80 + point.len() + 48),
        ));
        out.extend_from_slice(b"{\"Data\":[");
        for (i, share) in self.shares.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"Xi\":");
            out.extend_from_slice(decimal_from_be(&share.value).as_bytes());
            out.extend_from_slice(b",\"ShareID\":");
            out.extend_from_slice(decimal_from_be(&share.id).as_bytes());
            out.extend_from_slice(format!(",\"{key}\":{point}}}").as_bytes());
        }
        let threshold = self
            .threshold
            .checked_sub(1)
            .ok_or_else(|| RecoveryError::Format("a threshold of 0".into()))?;
        out.extend_from_slice(
            format!(
                "],\"VaultId\":{},\"Threshold\":{threshold}}}",
                serde_json::Value::from(self.vault_id.as_str())
            )
            .as_bytes(),
        );
        Ok(out)
    }
}
