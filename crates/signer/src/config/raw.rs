//! Raw values: the configuration file (JSON or TOML) and environment variables, merged into
//! one map from key to value and origin. Parsing is pure; validation is in `super`.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, Origin};
use super::keys;

/// One raw value as written in the file or the environment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Raw>),
    /// A nested table / object: never valid for a key.
    Table,
}

impl Raw {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Raw::Str(_) => "a string",
            Raw::Int(_) => "an integer",
            Raw::Float(_) => "a number",
            Raw::Bool(_) => "a boolean",
            Raw::List(_) => "a list",
            Raw::Table => "a table",
        }
    }

    fn from_json(v: serde_json::Value) -> Raw {
        match v {
            serde_json::Value::String(s) => Raw::Str(s),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Raw::Int(i),
                None => Raw::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::Bool(b) => Raw::Bool(b),
            // `null` means "not set", like an empty string.
            serde_json::Value::Null => Raw::Str(String::new()),
            serde_json::Value::Array(a) => Raw::List(a.into_iter().map(Raw::from_json).collect()),
            serde_json::Value::Object(_) => Raw::Table,
        }
    }

    fn from_toml(v: toml::Value) -> Raw {
        match v {
            toml::Value::String(s) => Raw::Str(s),
            toml::Value::Integer(i) => Raw::Int(i),
            toml::Value::Float(f) => Raw::Float(f),
            toml::Value::Boolean(b) => Raw::Bool(b),
            toml::Value::Array(a) => Raw::List(a.into_iter().map(Raw::from_toml).collect()),
            toml::Value::Datetime(d) => Raw::Str(d.to_string()),
            toml::Value::Table(_) => Raw::Table,
        }
    }
}

/// Values by key, with where each came from.
pub(crate) type RawMap = BTreeMap<&'static str, (Raw, Origin)>;

/// Which file format: by extension, else by content (`{` first: JSON, else TOML).
fn is_json(path: &Path, text: &str) -> bool {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => true,
        Some("toml") => false,
        _ => text.trim_start().starts_with('{'),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses the file into top-level key/value pairs. Errors give the position and the kind of
/// error only: a parser's message can quote the offending line, which may hold a secret.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<Vec<(String, Raw)>, ConfigError> {
    let file_err = |problem: String| ConfigError::File {
        path: path.display().to_string(),
        problem,
    };
    if is_json(path, text) {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            file_err(format!(
                "not valid JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        match value {
            serde_json::Value::Object(map) => {
                Ok(map.into_iter().map(|(k, v)| (k, Raw::from_json(v))).collect())
            }
            _ => Err(file_err("expected a JSON object of configuration keys".into())),
        }
    } else {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start));
            // toml's message() is the kind of error; Display would quote the line.
            let kind = e.message().lines().next().unwrap_or("syntax error").to_owned();
            let kind = if kind.contains('"') || kind.contains('\'') {
                "syntax error".to_owned()
            } else {
                kind
            };
            match at {
                Some((line, col)) => file_err(format!("not valid TOML ({kind} at line {line} column {col})")),
                None => file_err(format!("not valid TOML ({kind})")),
            }
        })?;
        Ok(table.into_iter().map(|(k, v)| (k, Raw::from_toml(v))).collect())
    }
}

/// A key spelt with other letter case, or a close match, for "did you mean".
fn suggestion(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let squash = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    keys::ALL
        .iter()
        .find(|k| k.to_ascii_lowercase() == lower)
        .or_else(|| keys::ALL.iter().find(|k| squash(k) == squash(name)))
        .copied()
}

fn unknown(var: &str, name: &str) -> ConfigError {
    let problem = match suggestion(name) {
        Some(k) => format!("unknown environment variable (did you mean {k}?)"),
        None => "unknown environment variable (see docs/signer.md for the keys)".to_owned(),
    };
    ConfigError::key_error(var, None, problem)
}

/// Adds the file's pairs to `map`. An unknown key is an error.
pub(crate) fn add_file(map: &mut RawMap, pairs: Vec<(String, Raw)>) -> Result<(), ConfigError> {
    for (name, value) in pairs {
        let Some(key) = keys::ALL.iter().find(|k| **k == name) else {
            let problem = match suggestion(&name) {
                Some(k) => format!("unknown key in the config file (did you mean {k}?)"),
                None => "unknown key in the config file (see docs/signer.md for the keys)".to_owned(),
            };
            return Err(ConfigError::key_error(&name, Some(Origin::File), problem));
        };
        map.insert(key, (value, Origin::File));
    }
    Ok(())
}

/// Prefix of vsigner's own variables (wins over [`EDG_PREFIX`]).
pub(crate) const VSIGNER_PREFIX: &str = "VSIGNER_";
/// Prefix of the io.finnet Virtual Signer's variables.
pub(crate) const EDG_PREFIX: &str = "EDG_VS_";

/// Overlays environment variables on `map`: `VSIGNER_<Key>` over `EDG_VS_<Key>` over the plain
/// standard variables `STORAGE_BUCKET_URL` / `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` over the file.
///
/// Every `EDG_VS_*` variable must name a key. A `VSIGNER_*` variable must name a key when it
/// looks like one (it has a lower-case letter, or matches a key but for case); all-capital
/// names that match no key (`VSIGNER_BROKER_PASSWORD`, `VSIGNER_TEST_*`) belong to other parts
/// of vsigner and are ignored.
pub(crate) fn add_env(
    map: &mut RawMap,
    env: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // rank: 0 plain standard variable, 1 EDG_VS_, 2 VSIGNER_.
    let mut chosen: BTreeMap<&'static str, (u8, String, String)> = BTreeMap::new();
    let mut consider = |key: &'static str, rank: u8, var: &str, value: String| {
        if chosen.get(key).is_none_or(|(r, _, _)| *r < rank) {
            chosen.insert(key, (rank, var.to_owned(), value));
        }
    };
    for (var, value) in env {
        if let Some(name) = var.strip_prefix(VSIGNER_PREFIX) {
            match keys::ALL.iter().find(|k| **k == name) {
                Some(key) => consider(key, 2, &var, value),
                None if name.bytes().any(|b| b.is_ascii_lowercase()) || suggestion(name).is_some() => {
                    return Err(unknown(&var, name))
                }
                None => {}
            }
        } else if let Some(name) = var.strip_prefix(EDG_PREFIX) {
            match keys::ALL.iter().find(|k| **k == name) {
                Some(key) => consider(key, 1, &var, value),
                None => return Err(unknown(&var, name)),
            }
        } else if var == keys::STORAGE_BUCKET_URL {
            consider(keys::STORAGE_BUCKET_URL, 0, &var, value);
        } else if var == keys::OTLP_LOGS_ENDPOINT {
            consider(keys::OTLP_LOGS_ENDPOINT, 0, &var, value);
        }
    }
    for (key, (_, var, value)) in chosen {
        map.insert(key, (Raw::Str(value), Origin::Env(var)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_error_does_not_quote_the_line() {
        let text = "Port = 8080\nAuthClientSecret = \"hunter2-secret\nOrgId = \"x\"\n";
        let err = parse_file(Path::new("c.toml"), text).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn json_error_does_not_quote_content() {
        let text = "{\"AuthClientSecret\": \"hunter2-secret\" \"x\"}";
        let err = parse_file(Path::new("c.json"), text).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn format_sniffed_from_content() {
        let pairs = parse_file(Path::new("conf"), "{\"Port\": 1}").unwrap();
        assert_eq!(pairs, vec![("Port".to_owned(), Raw::Int(1))]);
        let pairs = parse_file(Path::new("conf"), "Port = 2").unwrap();
        assert_eq!(pairs, vec![("Port".to_owned(), Raw::Int(2))]);
    }
}
