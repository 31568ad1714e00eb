//! The rules of the settings about the others: the broker and its CA, the initial devices,
//! the approval mode, the trusted device keys. The settings of this machine are in
//! [`local`](super::local).

use std::path::PathBuf;

use url::Url;
use vsigner_approval::{ApprovalConfig, ApprovalValues};
use zeroize::Zeroizing;

use super::raw::Raw;
use super::values::{numbered, quoted, MqttParts, Reader};
use super::*;

impl Reader {
    pub(super) fn mqtt(&self) -> Result<MqttParts, ConfigError> {
        let key = keys::MQTT_ENDPOINT;
        let s = self.required(key, "the MQTT broker URL, e.g. mqtts://broker:8883")?;
        let expected = "expected an mqtt://, mqtts://, tcp://, ssl://, tls://, ws:// or wss:// URL";
        let mut url = Url::parse(&s)
            .ok()
            .filter(|u| vsigner_transport::BrokerScheme::of(u).is_ok())
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| self.err(key, format!("{expected}, got {}", quoted(&s))))?;
        let username = self.string(keys::MQTT_USERNAME)?;
        let password = self.secret(keys::MQTT_PASSWORD, 1)?;
        let url_user = (!url.username().is_empty()).then(|| url.username().to_owned());
        let url_password = url.password().map(|p| Zeroizing::new(p.to_owned()));
        if (url_user.is_some() || url_password.is_some()) && (username.is_some() || password.is_some()) {
            return Err(self.err(
                key,
                "has credentials in the URL and MQTTUsername/MQTTPassword are set: keep one of them",
            ));
        }
        // Move credentials out of the URL so that the endpoint can be shown and logged.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(MqttParts {
            endpoint: url,
            username: username.or(url_user),
            password: password.or(url_password),
        })
    }

    /// A CA certificate under `key` (`MQTTCACert`, `APICACert`): PEM text or a PEM file.
    pub(super) fn ca_cert(&self, key: &'static str) -> Result<Option<CaCert>, ConfigError> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        let (pem, source) = if s.contains("-----BEGIN") {
            (s.into_bytes(), CaCertSource::Inline)
        } else {
            let path = PathBuf::from(&s);
            let pem = std::fs::read(&path).map_err(|e| {
                self.err(
                    key,
                    format!(
                        "expected PEM text or a readable PEM file, cannot read {}: {e}",
                        quoted(&s)
                    ),
                )
            })?;
            (pem, CaCertSource::File(path))
        };
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(self.err(key, "expected a PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        Ok(Some(CaCert { pem, source }))
    }

    /// `DisasterRecoveryPublicKey` (PEM text or a PEM file) and `DisasterRecoveryDir`: the
    /// key is read and checked now; the directory without the key is refused.
    pub(super) fn disaster_recovery(&self) -> Result<Option<DisasterRecoveryConfig>, ConfigError> {
        let key = keys::DISASTER_RECOVERY_PUBLIC_KEY;
        let dir = self.string(keys::DISASTER_RECOVERY_DIR)?;
        let Some(s) = self.string(key)? else {
            return match dir {
                Some(_) => Err(self.err(
                    keys::DISASTER_RECOVERY_DIR,
                    "is set but DisasterRecoveryPublicKey is not: set the key the .dr files are encrypted to, or unset the directory",
                )),
                None => Ok(None),
            };
        };
        let pem = if s.contains("-----BEGIN") {
            Zeroizing::new(s)
        } else {
            let path = PathBuf::from(&s);
            // The value is not quoted: it could be a private key pasted without its armour.
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    key,
                    format!("expected PEM text or the path of a readable PEM file; it is neither (as a path: {e})"),
                )
            })?;
            Zeroizing::new(pem)
        };
        if pem.contains("PRIVATE KEY") {
            // Said without quoting the value: it is a secret that must not be here.
            return Err(self.err(
                key,
                "holds a private key: give the public key (`vsigner recover keygen` writes both; `openssl pkey -pubout` derives it) and keep the private key offline",
            ));
        }
        let public_key =
            vsigner_recovery::DrPublicKey::from_pem(&pem).map_err(|e| self.err(key, e.to_string()))?;
        Ok(Some(DisasterRecoveryConfig {
            public_key,
            dir: PathBuf::from(dir.as_deref().unwrap_or(DEFAULT_DISASTER_RECOVERY_DIR)),
        }))
    }

    /// `TLSCertFile` and `TLSKeyFile`: both or neither; read and checked now.
    pub(super) fn api_tls(&self) -> Result<Option<ApiTls>, ConfigError> {
        let cert = self.string(keys::TLS_CERT_FILE)?.map(PathBuf::from);
        let key = self.string(keys::TLS_KEY_FILE)?.map(PathBuf::from);
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert_file), Some(key_file)) => {
                let server = vsigner_https::ServerTls::from_pem_files(&cert_file, &key_file)
                    .map_err(|e| self.err(keys::TLS_CERT_FILE, e.to_string()))?;
                Ok(Some(ApiTls {
                    cert_file,
                    key_file,
                    server,
                }))
            }
            (Some(_), None) => Err(self.err(
                keys::TLS_KEY_FILE,
                format!("must be set with {}", keys::TLS_CERT_FILE),
            )),
            (None, Some(_)) => Err(self.err(
                keys::TLS_CERT_FILE,
                format!("must be set with {}", keys::TLS_KEY_FILE),
            )),
        }
    }

    pub(super) fn initial_devices(&self) -> Result<Vec<String>, ConfigError> {
        // io.finnet's `InitialDevice` names one device; with `InitialDevices` too, it is
        // unclear which was meant.
        if let Some(one) = self.string(keys::INITIAL_DEVICE)? {
            if self.map.contains_key(keys::INITIAL_DEVICES) {
                return Err(self.err(
                    keys::INITIAL_DEVICE,
                    format!(
                        "set either {} or {}, not both",
                        keys::INITIAL_DEVICE,
                        keys::INITIAL_DEVICES
                    ),
                ));
            }
            if let Err(problem) = check_device_name(&one) {
                return Err(self.err(
                    keys::INITIAL_DEVICE,
                    format!("device name {}: {problem}", quoted(&one)),
                ));
            }
            return Ok(vec![one]);
        }
        let key = keys::INITIAL_DEVICES;
        let expected = format!(
            "expected a number of devices (0 to {MAX_INITIAL_DEVICES}), a device name, or a list of names"
        );
        let names: Vec<String> = match self.map.get(key) {
            None => Vec::new(),
            Some((Raw::Int(n), _)) => numbered(*n).ok_or_else(|| self.err(key, expected.clone()))?,
            Some((Raw::Str(s), _)) => {
                let s = s.trim();
                if s.is_empty() {
                    Vec::new()
                } else if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse()
                        .ok()
                        .and_then(numbered)
                        .ok_or_else(|| self.err(key, expected.clone()))?
                } else {
                    s.split(',').map(|n| n.trim().to_owned()).collect()
                }
            }
            Some((Raw::List(items), _)) => items
                .iter()
                .map(|i| match i {
                    Raw::Str(s) => Ok(s.trim().to_owned()),
                    other => Err(self.err(key, format!("{expected}; got {} in the list", other.type_name()))),
                })
                .collect::<Result<_, _>>()?,
            Some((other, _)) => return Err(self.err(key, format!("{expected}, got {}", other.type_name()))),
        };
        if names.len() > MAX_INITIAL_DEVICES {
            return Err(self.err(key, format!("at most {MAX_INITIAL_DEVICES} devices")));
        }
        for (i, name) in names.iter().enumerate() {
            if let Err(problem) = check_device_name(name) {
                return Err(self.err(key, format!("device name {}: {problem}", quoted(name))));
            }
            if names.iter().take(i).any(|n| n == name) {
                return Err(self.err(key, format!("device name {} appears twice", quoted(name))));
            }
        }
        Ok(names)
    }

    /// `SignerAPIToken`: one token, several separated by commas, or a list (a new token
    /// and the one it replaces, while clients move over). Each at least `min_len`
    /// characters; the values never appear in an error.
    pub(super) fn api_tokens(
        &self,
        key: &'static str,
        min_len: usize,
    ) -> Result<Vec<Zeroizing<String>>, ConfigError> {
        let invalid = |problem: String| self.err(key, format!("is set but invalid: {problem}"));
        let tokens: Vec<Zeroizing<String>> = match self.map.get(key) {
            None => Vec::new(),
            Some((Raw::Str(s), _)) => s
                .split(',')
                .map(|t| Zeroizing::new(t.trim().to_owned()))
                .filter(|t| !t.is_empty())
                .collect(),
            Some((Raw::List(items), _)) => items
                .iter()
                .map(|i| match i {
                    Raw::Str(s) => Ok(Zeroizing::new(s.trim().to_owned())),
                    other => Err(invalid(format!(
                        "expected tokens (strings), got {} in the list",
                        other.type_name()
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some((other, _)) => {
                return Err(invalid(format!(
                    "expected a token or a list of tokens, got {}",
                    other.type_name()
                )))
            }
        };
        if tokens.len() > MAX_API_TOKENS {
            return Err(invalid(format!("at most {MAX_API_TOKENS} tokens")));
        }
        let which = |i: usize| match tokens.len() {
            1 => String::new(),
            n => format!("token {} of {n}: ", i + 1),
        };
        for (i, t) in tokens.iter().enumerate() {
            if t.chars().count() < min_len {
                return Err(invalid(format!(
                    "{}expected at least {min_len} characters",
                    which(i)
                )));
            }
            if t.chars().any(char::is_control) {
                return Err(invalid(format!("{}contains control characters", which(i))));
            }
        }
        Ok(tokens)
    }

    pub(super) fn approval(&self) -> Result<ApprovalConfig, ConfigError> {
        use vsigner_approval::config::keys as a;
        let values = ApprovalValues {
            approval_mode: self.string(a::APPROVAL_MODE)?,
            external_transaction_approval_url: self.string(a::TRANSACTION_URL)?,
            external_reshare_approval_url: self.string(a::RESHARE_URL)?,
            approval_http_public_key_hex: self.string(a::PUBLIC_KEY_HEX)?,
            approval_node_rpc_address: self.string(a::NODE_RPC)?,
            approval_smart_contract_address: self.string(a::CONTRACT_ADDRESS)?,
            approval_timeout_seconds: self.string(a::TIMEOUT_SECONDS)?,
            approval_retries: self.string(a::RETRIES)?,
            approval_accept_insecure: self.string(a::ACCEPT_INSECURE)?,
            approval_chain_id: self.string(a::CHAIN_ID)?,
            approval_contract_code_hash: self.string(a::CONTRACT_CODE_HASH)?,
            approval_contract_layout: self.string(a::CONTRACT_LAYOUT)?,
            human_approval_passkeys_file: self.string(a::HUMAN_PASSKEYS_FILE)?,
            human_approval_quorum: self.string(a::HUMAN_QUORUM)?,
            human_approval_origin: self.string(a::HUMAN_ORIGIN)?,
            human_approval_rp_id: self.string(a::HUMAN_RP_ID)?,
        };
        ApprovalConfig::from_values(&values).map_err(|e| {
            use vsigner_approval::ConfigError as E;
            let key = e.key();
            match e {
                E::Missing { key, .. } if key == a::APPROVAL_MODE => ConfigError::key_error(
                    key,
                    None,
                    "must be set (AlwaysApprove, API, SmartContract or Human)",
                ),
                E::Missing { key, mode } => {
                    ConfigError::key_error(key, None, format!("must be set when ApprovalMode is {mode}"))
                }
                E::Invalid { key, reason } => self.err(key, reason),
                other => self.err(key, other.to_string()),
            }
        })
    }

    /// `TrustedDeviceKeys`: a list of hex Ed25519 keys, a comma-separated string of them,
    /// or the path of a file with one per line (`#` starts a comment).
    pub(super) fn trusted_device_keys(&self) -> Result<Option<crate::peers::TrustedKeys>, ConfigError> {
        let key = keys::TRUSTED_DEVICE_KEYS;
        let parse = |s: &str| -> Result<[u8; 32], ConfigError> {
            hex::decode(s.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .filter(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_ok())
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("{} is not a hex Ed25519 public key (32 bytes)", quoted(s)),
                    )
                })
        };
        let texts: Vec<String> = match self.map.get(key) {
            None => return Ok(None),
            Some((Raw::List(items), _)) => items
                .iter()
                .map(|i| match i {
                    Raw::Str(s) => Ok(s.clone()),
                    other => Err(self.err(
                        key,
                        format!("expected hex keys, got {} in the list", other.type_name()),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some((Raw::Str(s), _)) if s.trim().is_empty() => return Ok(None),
            Some((Raw::Str(s), _)) => {
                let s = s.trim();
                let looks_like_keys = s.split(',').all(|k| {
                    let k = k.trim();
                    k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if looks_like_keys {
                    s.split(',').map(str::to_owned).collect()
                } else {
                    let text = std::fs::read_to_string(s).map_err(|e| {
                        self.err(key, format!("cannot read the key list file {}: {e}", quoted(s)))
                    })?;
                    text.lines()
                        .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
                        .filter(|l| !l.is_empty())
                        .collect()
                }
            }
            Some((other, _)) => {
                return Err(self.err(
                    key,
                    format!("expected a list of hex keys or a file, got {}", other.type_name()),
                ))
            }
        };
        if texts.is_empty() {
            return Err(self.err(key, "lists no key: no device could ever receive a share"));
        }
        Ok(Some(texts.iter().map(|t| parse(t)).collect::<Result<_, _>>()?))
    }
}
