//! HTTP signatures, both directions. Pure functions: no I/O.
//!
//! - Requests from vsigner are signed per RFC 9421 (HTTP Message Signatures) with the
//!   device's Ed25519 key, with a `Content-Digest` per RFC 9530. See [`sign_request`].
//! - Replies from an io.finnet-style webhook carry `digest: SHA-512=<b64>` and a
//!   draft-cavage-style `Signature: keyId="eddsa-key",algorithm="hs2019",headers="content-type
//!   digest",signature="<b64>"` over `content-type: <v>\ndigest: <v>`. See [`verify_reply`].

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::Rng as _;
use sha2::{Digest as _, Sha512};

/// Label of vsigner's request signature in `Signature-Input` / `Signature`.
pub const REQUEST_SIGNATURE_LABEL: &str = "vsigner";
/// Components covered by vsigner's request signature, in order.
pub const COVERED_COMPONENTS: [&str; 5] = [
    "@method",
    "@target-uri",
    "content-type",
    "content-digest",
    "vs-nonce",
];
/// Largest nonce vsigner sends: 2^53 - 1, so that webhooks written in JavaScript (whose
/// numbers are doubles) echo it exactly. Within io.finnet's bound of `0x7FFFFFFFFFFFFFFE`.
pub const MAX_NONCE: u64 = (1 << 53) - 1;

/// A device's request-signing key: its Ed25519 signing key and the key id approvers know it
/// by (the device id).
///
/// # Security
/// The signing key is zeroized on drop (ed25519-dalek's `zeroize` feature) and never printed:
/// `Debug` shows only the key id and the public key.
pub struct DeviceKey {
    key_id: String,
    signing_key: SigningKey,
}

impl DeviceKey {
    /// Wraps a device signing key with its key id.
    pub fn new(key_id: impl Into<String>, signing_key: SigningKey) -> Self {
        Self {
            key_id: key_id.into(),
            signing_key,
        }
    }

    /// The key id sent as `keyid`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key approvers verify with.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        self.signing_key.sign(msg)
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("key_id", &self.key_id)
            .field("public_key", &hex::encode(self.public_key().as_bytes()))
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

/// A fresh random nonce in `1..=MAX_NONCE`.
pub fn new_nonce() -> u64 {
    rand::thread_rng().gen_range(1..=MAX_NONCE)
}

/// `sha-512=:<base64>:` (RFC 9530 `Content-Digest`).
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-512=:{}:", B64.encode(Sha512::digest(body)))
}

/// The headers vsigner adds to a webhook request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `VS-Nonce`.
    pub vs_nonce: String,
    /// `Accept-Signature` (io.finnet: asks for the reply signature).
    pub accept_signature: String,
    /// `Content-Digest` (RFC 9530).
    pub content_digest: String,
    /// `Signature-Input` (RFC 9421).
    pub signature_input: String,
    /// `Signature` (RFC 9421).
    pub signature: String,
}

/// The RFC 9421 signature parameters, the value of `@signature-params`.
pub fn signature_params(created: u64, key_id: &str) -> String {
    let components: Vec<String> = COVERED_COMPONENTS.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "({});created={created};keyid=\"{}\";alg=\"ed25519\"",
        components.join(" "),
        sf_escape(key_id)
    )
}

/// The RFC 9421 §2.5 signature base for vsigner's covered components.
pub fn signature_base(
    method: &str,
    target_uri: &str,
    content_type: &str,
    content_digest: &str,
    nonce: impl std::fmt::Display,
    params: &str,
) -> String {
    format!(
        "\"@method\": {method}\n\"@target-uri\": {target_uri}\n\"content-type\": {content_type}\n\
         \"content-digest\": {content_digest}\n\"vs-nonce\": {nonce}\n\"@signature-params\": {params}"
    )
}

/// Signs a `POST` of `body` to `target_uri` (the exact URL requested) at time `created`
/// (Unix seconds).
pub fn sign_request(
    key: &DeviceKey,
    target_uri: &str,
    body: &[u8],
    nonce: u64,
    created: u64,
) -> RequestHeaders {
    let content_type = "application/json";
    let content_digest = content_digest(body);
    let params = signature_params(created, key.key_id());
    let base = signature_base("POST", target_uri, content_type, &content_digest, nonce, &params);
    let sig = key.sign(base.as_bytes());
    RequestHeaders {
        content_type,
        vs_nonce: nonce.to_string(),
        accept_signature: format!("sig1=(\"content-type\" \"digest\");nonce={nonce};keyid=\"eddsa-key\""),
        content_digest,
        signature_input: format!("{REQUEST_SIGNATURE_LABEL}={params}"),
        signature: format!("{REQUEST_SIGNATURE_LABEL}=:{}:", B64.encode(sig.to_bytes())),
    }
}

// Key ids are device ids; escape what a structured-field string cannot hold verbatim.
fn sf_escape(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c))
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// Why a reply's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplySignatureError {
    /// No `digest` header.
    #[error("the reply is unsigned: no digest header")]
    MissingDigest,
    /// No `Signature` header.
    #[error("the reply is unsigned: no Signature header")]
    MissingSignature,
    /// `digest` has no `SHA-512=` value or it is not base64 of 64 bytes.
    #[error("the reply's digest header is malformed: {0}")]
    BadDigestHeader(String),
    /// The digest does not match the body.
    #[error("the reply's digest does not match its body (SHA-512)")]
    DigestMismatch,
    /// The `Signature` header cannot be parsed or covers the wrong headers.
    #[error("the reply's Signature header is malformed: {0}")]
    BadSignatureHeader(String),
    /// The signature does not verify under `ApprovalHTTPPublicKeyHex`.
    #[error("the reply's signature does not verify with ApprovalHTTPPublicKeyHex")]
    BadSignature,
}

/// Verifies an io.finnet-style reply signature: `digest` must be `SHA-512=<b64>` of `body`
/// and `signature` an Ed25519 signature by `key` over
/// `content-type: <content_type>\ndigest: <digest>` (header values as received).
///
/// io.finnet's samples sign the literal `content-type: application/json`; when the received
/// `Content-Type` is missing or differs (a gateway adding `; charset=utf-8`), the literal is
/// tried too. This is safe: the body is bound by the digest, which the signature covers.
///
/// The `Signature` header is the draft-cavage form
/// `keyId="eddsa-key",algorithm="hs2019",headers="content-type digest",signature="<b64>"`;
/// a bare base64 signature (as io.finnet's JavaScript sample sends) is accepted too, with
/// the same signed bytes. `keyId` is not checked; `headers`, when given, must be exactly
/// `content-type digest`, and `algorithm`, when given, `hs2019` or `ed25519`.
pub fn verify_reply(
    key: &VerifyingKey,
    content_type: Option<&str>,
    digest: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), ReplySignatureError> {
    let digest = digest.map(str::trim).ok_or(ReplySignatureError::MissingDigest)?;
    let signature = signature
        .map(str::trim)
        .ok_or(ReplySignatureError::MissingSignature)?;

    let claimed = digest
        .split(',')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(alg, _)| alg.trim().eq_ignore_ascii_case("SHA-512"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| ReplySignatureError::BadDigestHeader("no SHA-512= value".into()))?;
    let claimed = B64
        .decode(claimed)
        .map_err(|_| ReplySignatureError::BadDigestHeader("SHA-512 value is not base64".into()))?;
    if claimed.len() != 64 {
        return Err(ReplySignatureError::BadDigestHeader(
            "SHA-512 value is not 64 bytes".into(),
        ));
    }
    if claimed[..] != Sha512::digest(body)[..] {
        return Err(ReplySignatureError::DigestMismatch);
    }

    let sig_b64 = if signature.contains("signature=") {
        let params = parse_cavage(signature).map_err(ReplySignatureError::BadSignatureHeader)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(h) = get("headers") {
            let h: Vec<String> = h.split_whitespace().map(str::to_ascii_lowercase).collect();
            if h != ["content-type", "digest"] {
                return Err(ReplySignatureError::BadSignatureHeader(format!(
                    "covers headers {:?}, expected \"content-type digest\"",
                    h.join(" ")
                )));
            }
        }
        if let Some(a) = get("algorithm") {
            if !a.eq_ignore_ascii_case("hs2019") && !a.eq_ignore_ascii_case("ed25519") {
                return Err(ReplySignatureError::BadSignatureHeader(format!(
                    "algorithm {a:?} is not hs2019 or ed25519"
                )));
            }
        }
        get("signature")
            .ok_or_else(|| ReplySignatureError::BadSignatureHeader("no signature parameter".into()))?
            .to_owned()
    } else {
        signature.to_owned()
    };
    let sig_bytes = B64
        .decode(sig_b64.trim())
        .map_err(|_| ReplySignatureError::BadSignatureHeader("signature is not base64".into()))?;
    let sig = Signature::from_slice(&sig_bytes)
        .map_err(|_| ReplySignatureError::BadSignatureHeader("signature is not 64 bytes".into()))?;
    let verifies = |content_type: &str| {
        let signed = format!("content-type: {content_type}\ndigest: {digest}");
        key.verify_strict(signed.as_bytes(), &sig).is_ok()
    };
    let received = content_type.map(str::trim);
    if received.is_some_and(verifies)
        || (received != Some("application/json") && verifies("application/json"))
    {
        Ok(())
    } else {
        Err(ReplySignatureError::BadSignature)
    }
}

// ---- the approver's side (for approvers written in Rust, e.g. the demo's) ----

/// The headers of a signed approver reply (see [`sign_reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHeaders {
    /// `digest: SHA-512=<b64>`.
    pub digest: String,
    /// `Signature: keyId="eddsa-key",algorithm="hs2019",headers="content-type digest",signature="<b64>"`.
    pub signature: String,
}

/// Signs an approver's reply `body` (sent with `Content-Type: application/json`) the
/// io.finnet way, as [`verify_reply`] checks it.
pub fn sign_reply(key: &SigningKey, body: &[u8]) -> ReplyHeaders {
    let digest = format!("SHA-512={}", B64.encode(Sha512::digest(body)));
    let signed = format!("content-type: application/json\ndigest: {digest}");
    let sig = B64.encode(key.sign(signed.as_bytes()).to_bytes());
    ReplyHeaders {
        digest,
        signature: format!(
            "keyId=\"eddsa-key\",algorithm=\"hs2019\",headers=\"content-type digest\",signature=\"{sig}\""
        ),
    }
}

/// Why a request's RFC 9421 signature was not accepted by an approver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestSignatureError {
    /// A required header is missing or not text.
    #[error("the request has no usable {0} header")]
    MissingHeader(&'static str),
    /// `Signature-Input` is not vsigner's form or does not cover the required components.
    #[error("the request's Signature-Input is not accepted: {0}")]
    BadInput(String),
    /// The key id is not a known device.
    #[error("the request is signed by an unknown key id {0:?}")]
    UnknownKey(String),
    /// `created` is too far from the approver's clock.
    #[error("the request's signature was created {0} s away from now")]
    Stale(u64),
    /// `Content-Digest` does not match the body.
    #[error("the request's Content-Digest does not match its body")]
    DigestMismatch,
    /// The signature does not verify.
    #[error("the request's signature does not verify")]
    BadSignature,
}

/// The headers an approver reads from a request of vsigner (see [`verify_request`]).
#[derive(Debug, Clone, Copy)]
pub struct ReceivedRequest<'a> {
    /// `@target-uri`: the URL the request was sent to, as the approver's clients use it.
    pub target_uri: &'a str,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Content-Digest`.
    pub content_digest: Option<&'a str>,
    /// `VS-Nonce`.
    pub vs_nonce: Option<&'a str>,
    /// `Signature-Input`.
    pub signature_input: Option<&'a str>,
    /// `Signature`.
    pub signature: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Verifies vsigner's RFC 9421 signature of a `POST` as an approver: the signature input must
/// be the [`REQUEST_SIGNATURE_LABEL`] one covering exactly [`COVERED_COMPONENTS`] with
/// `alg="ed25519"`, `created` within `max_skew_secs` of `now` (Unix seconds), the digest must
/// match the body, and the Ed25519 signature must verify (strictly) under the key that
/// `key_of` returns for the key id. Returns the key id (the device id) and the nonce.
///
/// No replay cache is kept: an approver whose decisions have side effects should remember
/// the (key id, nonce) pairs it answered for `max_skew_secs`.
pub fn verify_request(
    request: &ReceivedRequest<'_>,
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
    now: u64,
    max_skew_secs: u64,
) -> Result<(String, u64), RequestSignatureError> {
    use RequestSignatureError as E;
    let input = request
        .signature_input
        .ok_or(E::MissingHeader("Signature-Input"))?;
    let signature = request.signature.ok_or(E::MissingHeader("Signature"))?;
    let content_type = request.content_type.ok_or(E::MissingHeader("Content-Type"))?;
    let content_digest = request.content_digest.ok_or(E::MissingHeader("Content-Digest"))?;
    // The nonce is signed as sent (RFC 9421 covers header values, not their meaning).
    let nonce_text = request.vs_nonce.ok_or(E::MissingHeader("VS-Nonce"))?.trim();
    let nonce: u64 = nonce_text.parse().map_err(|_| E::MissingHeader("VS-Nonce"))?;
    let params = input
        .strip_prefix(REQUEST_SIGNATURE_LABEL)
        .and_then(|p| p.strip_prefix('='))
        .ok_or_else(|| E::BadInput(format!("no {REQUEST_SIGNATURE_LABEL}= signature")))?;
    let created: u64 = param(params, "created")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| E::BadInput("no created parameter".into()))?;
    let key_id = param(params, "keyid").ok_or_else(|| E::BadInput("no keyid parameter".into()))?;
    // Device ids are tokens; anything else (quotes, separators) is refused, not interpreted.
    if key_id.is_empty()
        || key_id.len() > 128
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(E::BadInput("the keyid is not a device id".into()));
    }
    // Exactly vsigner's own parameters: the components, then created, keyid and alg.
    if params != signature_params(created, &key_id) {
        return Err(E::BadInput(
            "the covered components or parameters are not vsigner's".into(),
        ));
    }
    let skew = now.abs_diff(created);
    if skew > max_skew_secs {
        return Err(E::Stale(skew));
    }
    let key = key_of(&key_id).ok_or_else(|| E::UnknownKey(key_id.clone()))?;
    if content_digest != self::content_digest(request.body) {
        return Err(E::DigestMismatch);
    }
    let sig = signature
        .strip_prefix(REQUEST_SIGNATURE_LABEL)
        .and_then(|s| s.strip_prefix("=:"))
        .and_then(|s| s.strip_suffix(':'))
        .and_then(|b| B64.decode(b).ok())
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(E::BadSignature)?;
    let base = signature_base(
        "POST",
        request.target_uri,
        content_type,
        content_digest,
        nonce_text,
        params,
    );
    key.verify_strict(base.as_bytes(), &sig)
        .map_err(|_| E::BadSignature)?;
    Ok((key_id, nonce))
}

/// The value of `;name=` in structured-field parameters (quotes removed).
fn param(params: &str, name: &str) -> Option<String> {
    let at = params.find(&format!(";{name}="))? + name.len() + 2;
    let rest = params.get(at..)?;
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.get(..quoted.find('"')?)?,
        None => rest.get(..rest.find(';').unwrap_or(rest.len()))?,
    };
    Some(value.to_owned())
}

/// Parses `k1="v1",k2="v2"` (draft-cavage `Signature` header parameters).
fn parse_cavage(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected name=\"value\" at {rest:?}"))?;
        let after = after.trim_start();
        let (v, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').ok_or("unterminated quoted value")?;
            (
                quoted.get(..end).unwrap_or_default(),
                quoted.get(end + 1..).unwrap_or_default(),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (
                after.get(..end).unwrap_or_default().trim(),
                after.get(end..).unwrap_or_default(),
            )
        };
        out.push((k.trim().to_owned(), v.to_owned()));
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected ',' at {rest:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_reply_verifies_and_a_changed_one_does_not() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let body = br#"{"status":"approved","nonce":5}"#;
        let h = sign_reply(&key, body);
        let pk = key.verifying_key();
        let check =
            |ct: Option<&str>, b: &[u8]| verify_reply(&pk, ct, Some(&h.digest), Some(&h.signature), b);
        assert_eq!(check(Some("application/json"), body), Ok(()));
        assert_eq!(
            check(Some("application/json"), br#"{"status":"approved","nonce":6}"#),
            Err(ReplySignatureError::DigestMismatch)
        );
        let other = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert_eq!(
            verify_reply(&other, None, Some(&h.digest), Some(&h.signature), body),
            Err(ReplySignatureError::BadSignature)
        );
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_is_refused() {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let pk = sk.verifying_key();
        let device = DeviceKey::new("dev-1", sk);
        let body = br#"{"__typename":"OperationSign"}"#;
        let uri = "http://127.0.0.1:9/approve";
        let h = sign_request(&device, uri, body, 42, 1_000);
        let received = ReceivedRequest {
            target_uri: uri,
            content_type: Some(h.content_type),
            content_digest: Some(&h.content_digest),
            vs_nonce: Some(&h.vs_nonce),
            signature_input: Some(&h.signature_input),
            signature: Some(&h.signature),
            body,
        };
        let keys = |id: &str| (id == "dev-1").then_some(pk);
        assert_eq!(
            verify_request(&received, keys, 1_010, 300),
            Ok(("dev-1".to_owned(), 42))
        );
        let refused = |r: ReceivedRequest<'_>| verify_request(&r, keys, 1_010, 300).unwrap_err();
        assert_eq!(
            refused(ReceivedRequest {
                body: b"{}",
                ..received
            }),
            RequestSignatureError::DigestMismatch
        );
        assert_eq!(
            refused(ReceivedRequest {
                target_uri: "http://127.0.0.1:9/other",
                ..received
            }),
            RequestSignatureError::BadSignature
        );
        assert_eq!(
            refused(ReceivedRequest {
                vs_nonce: Some("43"),
                ..received
            }),
            RequestSignatureError::BadSignature
        );
        assert!(matches!(
            verify_request(&received, keys, 2_000, 300),
            Err(RequestSignatureError::Stale(1_000))
        ));
        assert!(matches!(
            verify_request(&received, |_| None, 1_010, 300),
            Err(RequestSignatureError::UnknownKey(_))
        ));
        let narrower = h.signature_input.replace("\"vs-nonce\"", "");
        assert!(matches!(
            refused(ReceivedRequest {
                signature_input: Some(&narrower),
                ..received
            }),
            RequestSignatureError::BadInput(_)
        ));
        assert_eq!(
            refused(ReceivedRequest {
                signature: None,
                ..received
            }),
            RequestSignatureError::MissingHeader("Signature")
        );
        // The nonce is signed as sent: the same number written differently does not verify.
        assert_eq!(
            refused(ReceivedRequest {
                vs_nonce: Some("042"),
                ..received
            }),
            RequestSignatureError::BadSignature
        );
        // A signature created in the future is as stale as one from the past.
        assert!(matches!(
            verify_request(&received, keys, 500, 300),
            Err(RequestSignatureError::Stale(500))
        ));
        // Extra parameters, or a key id that is not a token, are refused before any key lookup.
        let extra = format!("{};tag=\"x\"", h.signature_input);
        assert!(matches!(
            refused(ReceivedRequest {
                signature_input: Some(&extra),
                ..received
            }),
            RequestSignatureError::BadInput(_)
        ));
        for odd in ["dev;1", "dev\\\"1", "dev 1", ""] {
            let input = h
                .signature_input
                .replace("keyid=\"dev-1\"", &format!("keyid=\"{odd}\""));
            let r = ReceivedRequest {
                signature_input: Some(&input),
                ..received
            };
            assert!(
                matches!(
                    verify_request(&r, |_| Some(pk), 1_010, 300),
                    Err(RequestSignatureError::BadInput(_))
                ),
                "keyid {odd:?}"
            );
        }
    }

    #[test]
    fn cavage_parses() {
        let p = parse_cavage(
            r#"keyId="eddsa-key",algorithm="hs2019",headers="content-type digest",signature="YWJj==""#,
        )
        .unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[3], ("signature".into(), "YWJj==".into()));
        assert!(parse_cavage(r#"keyId="x"#).is_err());
    }

    #[test]
    fn debug_redacts_the_signing_key() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let secret_hex = hex::encode(sk.to_bytes());
        let k = DeviceKey::new("dev-1", sk);
        let d = format!("{k:?}");
        assert!(d.contains("<redacted>") && d.contains("dev-1"));
        assert!(!d.contains(&secret_hex));
    }

    #[test]
    fn nonce_in_range() {
        for _ in 0..1000 {
            let n = new_nonce();
            assert!((1..=MAX_NONCE).contains(&n));
        }
    }
}
