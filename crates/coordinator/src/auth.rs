//! API client secrets and access tokens.
//!
//! - A client secret is 32 random bytes (`vss_` + base64url), shown once at creation;
//!   only its Argon2id hash (PHC string) is stored.
//! - An access token is 32 random bytes (`vst_` + base64url), opaque; only its SHA-256
//!   is stored (table `access_tokens`), with the client, organisation, role and expiry.
//!   Any coordinator process sharing the database accepts it; it cannot be forged
//!   without the database and is useless after `expires_at`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::crypto::random_bytes;
use crate::error::{Error, Result};

/// A secret string (client secret or token) whose `Debug` does not print it.
///
/// # Security
/// Zeroised on drop; `Debug` prints `<redacted>`; read it only with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn random_b64(prefix: &str) -> Secret {
    Secret(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    ))
}

/// A new client secret.
pub fn new_client_secret() -> Secret {
    random_b64("vss_")
}

/// A new access token.
pub fn new_token() -> Secret {
    random_b64("vst_")
}

/// A new console user's password (shown once; the user keeps it in a password manager).
pub fn new_console_password() -> Secret {
    random_b64("vsp_")
}

/// A new console session token (the cookie) or CSRF token.
pub fn new_session_token() -> Secret {
    random_b64("vsx_")
}

/// SHA-256 (hex) of a token: what the database stores.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Argon2id hash (PHC string) of a client secret.
pub fn hash_secret(secret: &Secret) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| Error::internal("salt", e))?;
    Argon2::default()
        .hash_password(secret.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal("argon2", e))
}

/// A fixed Argon2id hash (same parameters as real ones) that unknown client ids are
/// verified against, so that a token request costs the same whether the id exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        SaltString::encode_b64(b"vsigner-dummy-salt")
            .ok()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"vsigner: no such client", &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    })
}

/// Checks a client secret against its stored hash.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_redact() {
        let s = new_client_secret();
        let h = hash_secret(&s).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret(s.expose(), &h));
        assert!(!verify_secret("vss_wrong", &h));
        assert!(!format!("{s:?}").contains(s.expose()));
        assert!(dummy_hash().starts_with("$argon2id$"));
        assert!(!verify_secret(s.expose(), dummy_hash()));
    }
}
