//! The configuration error: one line naming the key and what is expected.

use std::fmt;

/// Where a configuration value came from (named in errors so the operator knows what to fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File,
    /// An environment variable (its name).
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File => f.write_str("config file"),
            Origin::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// A configuration that cannot be used. `Display` is one line naming the key (or the file) and
/// what is expected; it never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key is unknown, missing or has a bad value.
    #[error("config key {key}{}: {problem}", origin_suffix(.origin))]
    Key {
        /// The configuration key (PascalCase, as in the file), or the environment variable name
        /// for an unknown variable.
        key: String,
        /// Where the offending value came from (`None`: the key is missing).
        origin: Option<Origin>,
        /// What is wrong and what is expected (never a secret value).
        problem: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("config file {path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong (position and kind of error; never the file's content).
        problem: String,
    },
}

fn origin_suffix(origin: &Option<Origin>) -> String {
    match origin {
        Some(o @ Origin::Env(_)) => format!(" (from {o})"),
        _ => String::new(),
    }
}

impl ConfigError {
    /// The key at fault, if the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            ConfigError::File { .. } => None,
        }
    }

    pub(crate) fn key_error(key: &str, origin: Option<Origin>, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            origin,
            problem: problem.into(),
        }
    }
}
