//! The rules of the settings of this machine: telemetry exporters, the keystore location
//! and sealing, polling and log format.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::values::{quoted, Reader};
use super::*;

impl Reader {
    pub(super) fn trace_exporter(&self) -> Result<TraceSpanExporter, ConfigError> {
        let key = keys::TRACE_SPAN_EXPORTER;
        match self.string(key)? {
            None => Ok(TraceSpanExporter::None),
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "none" => Ok(TraceSpanExporter::None),
                "stdout" => Ok(TraceSpanExporter::Stdout),
                "otlp-no-tls" => Ok(TraceSpanExporter::OtlpNoTls),
                "otlp-tls" => Ok(TraceSpanExporter::OtlpTls),
                _ => Err(self.err(
                    key,
                    format!(
                        "expected none, stdout, OTLP-NO-TLS or OTLP-TLS, got {}",
                        quoted(&s)
                    ),
                )),
            },
        }
    }

    /// An OTLP/HTTP URL; `tls`: `Some(true)` requires https, `Some(false)` http.
    pub(super) fn otlp_url(
        &self,
        key: &'static str,
        s: &str,
        tls: Option<bool>,
        signal: &str,
    ) -> Result<Url, ConfigError> {
        let mut url = self.http_url(key, s)?;
        match tls {
            Some(true) if url.scheme() != "https" => {
                return Err(self.err(key, "expected an https:// URL when TraceSpanExporter is OTLP-TLS"))
            }
            Some(false) if url.scheme() != "http" => {
                return Err(self.err(
                    key,
                    "expected an http:// URL when TraceSpanExporter is OTLP-NO-TLS",
                ))
            }
            _ => {}
        }
        let suffix = format!("/v1/{signal}");
        if !url.path().ends_with(&suffix) {
            let path = format!("{}{suffix}", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Ok(url)
    }

    pub(super) fn storage(&self) -> Result<String, ConfigError> {
        let key = keys::STORAGE_BUCKET_URL;
        let Some(s) = self.string(key)? else {
            return Ok(DEFAULT_STORAGE_BUCKET_URL.to_owned());
        };
        if let Some((scheme, rest)) = s.split_once("://") {
            const SCHEMES: &[&str] = &[
                "file", "memory", "s3", "s3a", "az", "azure", "abfs", "abfss", "adl",
            ];
            if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())
                || (scheme != "memory" && rest.is_empty())
            {
                return Err(self.err(
                    key,
                    format!(
                        "expected a directory path or a file://, s3:// or az:// URL, got {}",
                        quoted(&s)
                    ),
                ));
            }
        }
        Ok(s)
    }

    pub(super) fn sealing(&self) -> Result<KeystoreSealing, ConfigError> {
        let passphrase = self.secret(keys::KEYSTORE_PASSPHRASE, MIN_PASSPHRASE_LEN)?;
        let key_file = self.string(keys::KEYSTORE_KEY_FILE)?.map(PathBuf::from);
        let key = keys::KEYSTORE_SEALING;
        let mode = match self.string(key)? {
            Some(s) => match s.to_ascii_lowercase().as_str() {
                m @ ("passphrase" | "keyfile" | "sgx") => m.to_owned(),
                _ => return Err(self.err(key, format!("expected passphrase, keyfile or sgx, got {}", quoted(&s)))),
            },
            None => match (&passphrase, &key_file) {
                (Some(_), None) => "passphrase".to_owned(),
                (None, Some(_)) => "keyfile".to_owned(),
                (Some(_), Some(_)) => {
                    return Err(ConfigError::key_error(
                        key,
                        None,
                        "must be set (passphrase or keyfile) when both KeystorePassphrase and KeystoreKeyFile are set",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::key_error(
                        key,
                        None,
                        "must be set (passphrase, keyfile or sgx), or set KeystorePassphrase or KeystoreKeyFile",
                    ))
                }
            },
        };
        let unused =
            |k: &'static str, m: &str| self.err(k, format!("must not be set when KeystoreSealing is {m}"));
        match mode.as_str() {
            "passphrase" => {
                if key_file.is_some() {
                    return Err(unused(keys::KEYSTORE_KEY_FILE, "passphrase"));
                }
                passphrase.map(KeystoreSealing::Passphrase).ok_or_else(|| {
                    ConfigError::key_error(
                        keys::KEYSTORE_PASSPHRASE,
                        None,
                        "must be set when KeystoreSealing is passphrase",
                    )
                })
            }
            "keyfile" => {
                if passphrase.is_some() {
                    return Err(unused(keys::KEYSTORE_PASSPHRASE, "keyfile"));
                }
                key_file.map(KeystoreSealing::KeyFile).ok_or_else(|| {
                    ConfigError::key_error(
                        keys::KEYSTORE_KEY_FILE,
                        None,
                        "must be set when KeystoreSealing is keyfile",
                    )
                })
            }
            _ => {
                if passphrase.is_some() {
                    return Err(unused(keys::KEYSTORE_PASSPHRASE, "sgx"));
                }
                if key_file.is_some() {
                    return Err(unused(keys::KEYSTORE_KEY_FILE, "sgx"));
                }
                Ok(KeystoreSealing::Sgx)
            }
        }
    }

    pub(super) fn poll_interval(&self) -> Result<Duration, ConfigError> {
        let key = keys::POLL_INTERVAL_SECONDS;
        match self.string(key)? {
            None => Ok(DEFAULT_POLL_INTERVAL),
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.05 && *v <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!(
                            "expected a number of seconds from 0.05 to 3600, got {}",
                            quoted(&s)
                        ),
                    )
                }),
        }
    }

    pub(super) fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let key = keys::LOG_FORMAT;
        match self.string(key)?.map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => Err(self.err(key, format!("expected json or text, got {}", quoted(other)))),
        }
    }
}
