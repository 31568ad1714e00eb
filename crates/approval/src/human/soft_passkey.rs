//! A software passkey (feature `soft-passkey`): **for tests and the demo only**. Its P-256
//! key lives in this process's memory and it verifies no person; it speaks WebAuthn as a
//! platform authenticator and a browser would (attestation `none`, user presence and
//! verification flags set), so the checks it meets are the real ones.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::Value;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use url::Url;
use webauthn_rs_core::proto::{RegisterPublicKeyCredential, UserVerificationPolicy};
use webauthn_rs_core::WebauthnCore;

use super::{challenge, HumanAnswer, Passkey, Verdict};

/// User present.
const FLAG_UP: u8 = 0x01;
/// User verified.
const FLAG_UV: u8 = 0x04;
/// Attested credential data included.
const FLAG_AT: u8 = 0x40;

/// A passkey whose private key is in memory.
pub struct SoftPasskey {
    key: SigningKey,
    credential_id: [u8; 16],
    /// Whether assertions claim user verification (false: a key without biometrics).
    pub user_verified: bool,
    /// Whether assertions say they were made inside another site's frame.
    pub cross_origin: bool,
}

impl std::fmt::Debug for SoftPasskey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftPasskey")
            .field("credential_id", &URL_SAFE_NO_PAD.encode(self.credential_id))
            .finish_non_exhaustive()
    }
}

impl Default for SoftPasskey {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftPasskey {
    /// A new key with a random credential id.
    pub fn new() -> Self {
        let mut credential_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut credential_id);
        Self {
            key: SigningKey::random(&mut rand::rngs::OsRng),
            credential_id,
            user_verified: true,
            cross_origin: false,
        }
    }

    /// Registers with the relying party `rp_id` at `origin` as a browser would, through
    /// webauthn-rs-core's registration checks; returns the passkey they accepted.
    pub fn register(&self, name: &str, origin: &Url, rp_id: &str) -> Result<Passkey, String> {
        let core = WebauthnCore::new_unsafe_experts_only(
            "vsigner",
            rp_id,
            vec![origin.clone()],
            Duration::from_secs(300),
            Some(false),
            Some(false),
        );
        let builder = core
            .new_challenge_register_builder(&self.credential_id, name, name)
            .map_err(|e| e.to_string())?
            .user_verification_policy(UserVerificationPolicy::Required);
        let (options, state) = core
            .generate_challenge_register(builder)
            .map_err(|e| e.to_string())?;
        let client_data = client_data("webauthn.create", &options.public_key.challenge, origin);

        let point = self.key.verifying_key().to_encoded_point(false);
        let (x, y) = (
            point.x().ok_or("no x")?.to_vec(),
            point.y().ok_or("no y")?.to_vec(),
        );
        let cose_key = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer(2.into())),
            (Value::Integer(3.into()), Value::Integer((-7).into())),
            (Value::Integer((-1).into()), Value::Integer(1.into())),
            (Value::Integer((-2).into()), Value::Bytes(x)),
            (Value::Integer((-3).into()), Value::Bytes(y)),
        ]);
        let mut auth_data = authenticator_data(rp_id, FLAG_UP | FLAG_UV | FLAG_AT);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        ciborium::into_writer(&cose_key, &mut auth_data).map_err(|e| e.to_string())?;
        let attestation = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (Value::Text("authData".into()), Value::Bytes(auth_data)),
        ]);
        let mut attestation_object = Vec::new();
        ciborium::into_writer(&attestation, &mut attestation_object).map_err(|e| e.to_string())?;

        let id = URL_SAFE_NO_PAD.encode(self.credential_id);
        let response: RegisterPublicKeyCredential = serde_json::from_value(serde_json::json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(&attestation_object),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
            },
        }))
        .map_err(|e| e.to_string())?;
        let credential = core
            .register_credential(&response, &state, None)
            .map_err(|e| e.to_string())?;
        Ok(Passkey::new(name, credential))
    }

    /// The assertion a browser would return for `challenge` at `origin` (JSON of a
    /// `PublicKeyCredential`).
    pub fn assert(&self, challenge: &[u8], origin: &Url, rp_id: &str) -> String {
        let flags = if self.user_verified {
            FLAG_UP | FLAG_UV
        } else {
            FLAG_UP
        };
        let auth_data = authenticator_data(rp_id, flags);
        let mut client_data = client_data("webauthn.get", challenge, origin);
        if self.cross_origin {
            let mut v: serde_json::Value = serde_json::from_slice(&client_data).unwrap_or_default();
            v["crossOrigin"] = true.into();
            client_data = serde_json::to_vec(&v).unwrap_or_default();
        }
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: DerSignature = self.key.sign(&signed);
        let id = URL_SAFE_NO_PAD.encode(self.credential_id);
        serde_json::json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.as_bytes()),
                "userHandle": null,
            },
            "clientExtensionResults": {},
        })
        .to_string()
    }

    /// The credential id, base64url.
    pub fn credential_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.credential_id)
    }

    /// The private key as PKCS#8 DER, base64 (standard): what Chromium's virtual
    /// authenticator takes (`WebAuthn.addCredential`), so that a browser test answers with
    /// this very key.
    pub fn private_key_pkcs8_base64(&self) -> String {
        use base64::engine::general_purpose::STANDARD;
        use p256::pkcs8::EncodePrivateKey as _;
        self.key
            .to_pkcs8_der()
            .map(|der| STANDARD.encode(der.as_bytes()))
            .unwrap_or_default()
    }

    /// A person's answer `verdict` on the request whose exact bytes are `request`.
    pub fn answer(&self, verdict: Verdict, request: &[u8], origin: &Url, rp_id: &str) -> HumanAnswer {
        HumanAnswer {
            verdict,
            assertion: self.assert(&challenge(verdict, request), origin, rp_id),
        }
    }
}

/// The `HumanApprovalPasskeysFile` text for `passkeys`.
pub fn passkeys_file(passkeys: &[Passkey]) -> String {
    let entries: Vec<_> = passkeys
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "passkey": {"cred": p.credential()}}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "passkeys": entries })).unwrap_or_default()
}

fn authenticator_data(rp_id: &str, flags: u8) -> Vec<u8> {
    let mut out = Sha256::digest(rp_id.as_bytes()).to_vec();
    out.push(flags);
    out.extend_from_slice(&0u32.to_be_bytes()); // signature counter: 0, as synced passkeys
    out
}

fn client_data(kind: &str, challenge: &[u8], origin: &Url) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": kind,
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": origin.origin().ascii_serialization(),
        "crossOrigin": false,
    }))
    .unwrap_or_default()
}
