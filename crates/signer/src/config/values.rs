//! Reading one key's value: where it came from, as a string, a secret, a port, a number in
//! range or an HTTP URL, with errors that name the key and never quote a secret.

use std::fmt;

use url::Url;
use zeroize::{Zeroize, Zeroizing};

use super::raw::{Raw, RawMap};
use super::{keys, shown_url, ConfigError, Origin, MAX_INITIAL_DEVICES};

/// A raw value in an error message: URLs without user info or query; long values cut.
pub(super) fn quoted(s: &str) -> String {
    let shown = match Url::parse(s) {
        Ok(u)
            if s.contains("://")
                && (!u.username().is_empty() || u.password().is_some() || u.query().is_some()) =>
        {
            shown_url(&u)
        }
        _ => s.to_owned(),
    };
    let mut cut: String = shown.chars().take(80).collect();
    if cut.len() < shown.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// `MQTTEndpoint` without credentials, and the credentials.
pub(super) struct MqttParts {
    pub(super) endpoint: Url,
    pub(super) username: Option<String>,
    pub(super) password: Option<Zeroizing<String>>,
}

/// Reads the merged raw values and validates them one key at a time.
pub(super) struct Reader {
    pub(super) map: RawMap,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // The raw strings include the secrets' text.
        for (value, _) in self.map.values_mut() {
            if let Raw::Str(s) = value {
                s.zeroize();
            }
        }
    }
}

impl Reader {
    pub(super) fn origin(&self, key: &str) -> Option<Origin> {
        self.map.get(key).map(|(_, o)| o.clone())
    }

    pub(super) fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::key_error(key, self.origin(key), problem)
    }

    /// The value as a trimmed string; `None` when unset or empty. Numbers and booleans are
    /// turned into their text; lists and tables are refused.
    pub(super) fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let secret = keys::SECRETS.contains(&key);
        let s = match self.map.get(key) {
            None => return Ok(None),
            Some((Raw::Str(s), _)) => s.trim().to_owned(),
            Some((Raw::Int(i), _)) => i.to_string(),
            Some((Raw::Float(f), _)) => f.to_string(),
            Some((Raw::Bool(b), _)) => b.to_string(),
            Some((other, _)) => {
                let problem = format!("expected a string, got {}", other.type_name());
                return Err(self.err(
                    key,
                    if secret {
                        format!("is set but invalid: {problem}")
                    } else {
                        problem
                    },
                ));
            }
        };
        Ok((!s.is_empty()).then_some(s))
    }

    pub(super) fn required(&self, key: &'static str, what: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| ConfigError::key_error(key, None, format!("must be set ({what})")))
    }

    pub(super) fn secret(
        &self,
        key: &'static str,
        min_len: usize,
    ) -> Result<Option<Zeroizing<String>>, ConfigError> {
        let Some(s) = self.string(key)?.map(Zeroizing::new) else {
            return Ok(None);
        };
        if s.chars().count() < min_len {
            return Err(self.err(
                key,
                format!("is set but invalid: expected at least {min_len} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(self.err(key, "is set but invalid: contains control characters"));
        }
        Ok(Some(s))
    }

    /// `true` or `false` (unset: false).
    pub(super) fn flag(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.string(key)?.map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(self.err(key, format!("expected true or false, got {}", quoted(other)))),
        }
    }

    pub(super) fn port(&self, key: &'static str, default: u16) -> Result<u16, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| {
                self.err(
                    key,
                    format!("expected a port number from 0 to 65535, got {}", quoted(&s)),
                )
            }),
        }
    }

    pub(super) fn whole<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        key: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => s
                .parse::<T>()
                .ok()
                .filter(|v| *v >= min && *v <= max)
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("expected a whole number from {min} to {max}, got {}", quoted(&s)),
                    )
                }),
        }
    }

    pub(super) fn http_url(&self, key: &'static str, s: &str) -> Result<Url, ConfigError> {
        let url = Url::parse(s)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| {
                self.err(
                    key,
                    format!("expected an http:// or https:// URL, got {}", quoted(s)),
                )
            })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(key, "credentials in the URL are not allowed"));
        }
        Ok(url)
    }
}

pub(super) fn numbered(n: i64) -> Option<Vec<String>> {
    let n = usize::try_from(n).ok().filter(|n| *n <= MAX_INITIAL_DEVICES)?;
    Some((1..=n).map(|i| format!("vs-device-{i}")).collect())
}
