//! Approval configuration, validated from the io.finnet configuration keys.

use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::Address;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;
use url::Url;

use crate::error::ConfigError;

/// Configuration key names (the io.finnet Virtual Signer's, plus two of vsigner's).
pub mod keys {
    /// `AlwaysApprove` | `API` | `SmartContract` | `Human`.
    pub const APPROVAL_MODE: &str = "ApprovalMode";
    /// Webhook for sign requests (API mode).
    pub const TRANSACTION_URL: &str = "ExternalTransactionApprovalURL";
    /// Webhook for keygen and reshare requests (API mode).
    pub const RESHARE_URL: &str = "ExternalReshareApprovalURL";
    /// Hex of the PEM text of the Ed25519 key that signs webhook replies (API mode).
    pub const PUBLIC_KEY_HEX: &str = "ApprovalHTTPPublicKeyHex";
    /// JSON-RPC URL of the EVM node (SmartContract mode).
    pub const NODE_RPC: &str = "ApprovalNodeRPCAddress";
    /// Address of the approval contract (SmartContract mode).
    pub const CONTRACT_ADDRESS: &str = "ApprovalSmartContractAddress";
    /// vsigner: how long one approval attempt may take, in seconds (default 10).
    pub const TIMEOUT_SECONDS: &str = "ApprovalTimeoutSeconds";
    /// vsigner: how many times a connection failure is retried (default 2).
    pub const RETRIES: &str = "ApprovalRetries";
    /// vsigner: `true` accepts a webhook whose answers anyone on the network path could
    /// give (plain http:// off loopback, or no `ApprovalHTTPPublicKeyHex`).
    pub const ACCEPT_INSECURE: &str = "ApprovalAcceptInsecure";
    /// vsigner: the chain id the SmartContract RPC must report (checked at start and on
    /// every decision).
    pub const CHAIN_ID: &str = "ApprovalChainId";
    /// vsigner: hex SHA-256 of the approval contract's runtime code (checked at start and
    /// on every decision).
    pub const CONTRACT_CODE_HASH: &str = "ApprovalContractCodeHash";
    /// vsigner: the structs the approval contract decodes: `iofinnet` (default, io.finnet's
    /// published `Approval.sol`) or `vsigner-v3` (vsigner's richer structs).
    pub const CONTRACT_LAYOUT: &str = "ApprovalContractLayout";
    /// vsigner, Human mode: the JSON file of the passkeys whose holders may answer for the
    /// device (docs/approvals.md).
    pub const HUMAN_PASSKEYS_FILE: &str = "HumanApprovalPasskeysFile";
    /// vsigner, Human mode: how many distinct passkeys must approve (default 1).
    pub const HUMAN_QUORUM: &str = "HumanApprovalQuorum";
    /// vsigner, Human mode: the console's origin, e.g. `https://console.example.com`.
    pub const HUMAN_ORIGIN: &str = "HumanApprovalOrigin";
    /// vsigner, Human mode: the WebAuthn relying-party id (default: the origin's host).
    pub const HUMAN_RP_ID: &str = "HumanApprovalRpId";
}

/// Default time allowed for one attempt to get an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of retries after a connection failure (3 attempts in all).
pub const DEFAULT_RETRIES: u32 = 2;
const MAX_RETRIES: u32 = 10;
const MAX_TIMEOUT_SECONDS: f64 = 600.0;

/// How votes are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalMode {
    /// Approve everything (development only; logs a warning on every vote).
    AlwaysApprove,
    /// Ask a webhook (`API`).
    Api,
    /// Ask an EVM contract with a read-only `eth_call`.
    SmartContract,
    /// Ask people, who answer with passkeys (vsigner's; [`crate::human`]).
    Human,
}

impl ApprovalMode {
    /// The configuration spelling: `AlwaysApprove`, `API`, `SmartContract`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::AlwaysApprove => "AlwaysApprove",
            ApprovalMode::Api => "API",
            ApprovalMode::SmartContract => "SmartContract",
            ApprovalMode::Human => "Human",
        }
    }
}

impl std::fmt::Display for ApprovalMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            "AlwaysApprove" => Ok(ApprovalMode::AlwaysApprove),
            "API" => Ok(ApprovalMode::Api),
            "SmartContract" => Ok(ApprovalMode::SmartContract),
            "Human" => Ok(ApprovalMode::Human),
            other => Err(ConfigError::Invalid {
                key: keys::APPROVAL_MODE,
                reason: format!("{other:?} is not one of AlwaysApprove, API, SmartContract, Human"),
            }),
        }
    }
}

/// Raw configuration values as read from the config file or environment (`None` or an
/// empty string: not set). Validate with [`ApprovalConfig::from_values`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalValues {
    /// `ApprovalMode`.
    pub approval_mode: Option<String>,
    /// `ExternalTransactionApprovalURL`.
    pub external_transaction_approval_url: Option<String>,
    /// `ExternalReshareApprovalURL`.
    pub external_reshare_approval_url: Option<String>,
    /// `ApprovalHTTPPublicKeyHex`.
    pub approval_http_public_key_hex: Option<String>,
    /// `ApprovalNodeRPCAddress`.
    pub approval_node_rpc_address: Option<String>,
    /// `ApprovalSmartContractAddress`.
    pub approval_smart_contract_address: Option<String>,
    /// `ApprovalTimeoutSeconds` (decimal seconds, e.g. `0.5`).
    pub approval_timeout_seconds: Option<String>,
    /// `ApprovalRetries`.
    pub approval_retries: Option<String>,
    /// `ApprovalAcceptInsecure` (`true` | `false`).
    pub approval_accept_insecure: Option<String>,
    /// `ApprovalChainId`.
    pub approval_chain_id: Option<String>,
    /// `ApprovalContractCodeHash`.
    pub approval_contract_code_hash: Option<String>,
    /// `ApprovalContractLayout` (`iofinnet` | `vsigner-v3`).
    pub approval_contract_layout: Option<String>,
    /// `HumanApprovalPasskeysFile`.
    pub human_approval_passkeys_file: Option<String>,
    /// `HumanApprovalQuorum`.
    pub human_approval_quorum: Option<String>,
    /// `HumanApprovalOrigin`.
    pub human_approval_origin: Option<String>,
    /// `HumanApprovalRpId`.
    pub human_approval_rp_id: Option<String>,
}

/// Webhook settings (`API` mode). `Debug` hides the URLs' queries (access codes).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `ExternalTransactionApprovalURL`: sign requests.
    pub transaction_url: Url,
    /// `ExternalReshareApprovalURL`: keygen and reshare requests.
    pub reshare_url: Url,
    /// `ApprovalHTTPPublicKeyHex`, decoded. When set, replies must be signed with it.
    pub reply_public_key: Option<VerifyingKey>,
    /// What the operator accepted with `ApprovalAcceptInsecure` (empty: nothing insecure).
    pub insecurities: Vec<String>,
}

/// Contract settings (`SmartContract` mode). `Debug` hides the RPC URL's path and query
/// (API keys).
#[derive(Clone, PartialEq, Eq)]
pub struct ContractConfig {
    /// `ApprovalNodeRPCAddress`.
    pub rpc_url: Url,
    /// `ApprovalSmartContractAddress`.
    pub address: Address,
    /// `ApprovalChainId`: the chain the RPC must be on; unset, the chain seen at the first
    /// check is kept and must not change.
    pub chain_id: Option<u64>,
    /// `ApprovalContractCodeHash`: SHA-256 of the contract's runtime code; unset, the code
    /// seen at the first check is kept and must not change.
    pub code_hash: Option<[u8; 32]>,
    /// `ApprovalContractLayout`: the structs the contract decodes.
    pub layout: ContractLayout,
}

/// The request structs an approval contract decodes (`ApprovalContractLayout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContractLayout {
    /// io.finnet's published `Approval.sol`: `KeygenReshareRequestSC`,
    /// `SigningTransactionRequestSC`, `NodeOpSignRequestSC` (`iofinnet`, the default: a
    /// contract written for io.finnet's Virtual Signer decides unchanged).
    #[default]
    IoFinnet,
    /// vsigner's structs, version 3 (`vsigner-v3`): curve, vault public key and key
    /// generation, identity keys and record hashes, the decoded transaction.
    VsignerV3,
}

impl ContractLayout {
    /// The configuration value: `iofinnet` or `vsigner-v3`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractLayout::IoFinnet => "iofinnet",
            ContractLayout::VsignerV3 => "vsigner-v3",
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("transaction_url", &shown_url(&self.transaction_url, true))
            .field("reshare_url", &shown_url(&self.reshare_url, true))
            .field(
                "reply_public_key",
                &self.reply_public_key.map(|k| hex::encode(k.as_bytes())),
            )
            .field("insecurities", &self.insecurities)
            .finish()
    }
}

impl std::fmt::Debug for ContractConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractConfig")
            .field("rpc_url", &shown_url(&self.rpc_url, false))
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .field("code_hash", &self.code_hash.map(hex::encode))
            .field("layout", &self.layout)
            .finish()
    }
}

/// A URL for logs, reasons and `Debug`: scheme, host, port, and the path when `with_path`;
/// never the query or fragment (they, or an RPC URL's path, often carry an access key).
pub(crate) fn shown_url(url: &Url, with_path: bool) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(p) = url.port() {
        out.push_str(&format!(":{p}"));
    }
    if with_path {
        out.push_str(url.path());
    }
    out
}

/// The settings of one mode.
// Built once at start: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeConfig {
    /// `AlwaysApprove`.
    AlwaysApprove,
    /// `API`.
    Api(ApiConfig),
    /// `SmartContract`.
    SmartContract(ContractConfig),
    /// `Human`.
    Human(crate::human::HumanConfig),
}

/// A validated approval configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalConfig {
    /// The mode and its settings.
    pub mode: ModeConfig,
    /// Time allowed for one attempt (connect, request, reply).
    pub timeout: Duration,
    /// Retries after a connection failure (never after a reply).
    pub retries: u32,
}

fn value(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn required<'a>(
    v: &'a Option<String>,
    key: &'static str,
    mode: ApprovalMode,
) -> Result<&'a str, ConfigError> {
    value(v).ok_or(ConfigError::Missing {
        key,
        mode: mode.as_str(),
    })
}

fn http_url(s: &str, key: &'static str) -> Result<Url, ConfigError> {
    let url = Url::parse(s).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("not a URL: {e}"),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("scheme {:?} is not http or https", url.scheme()),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::Invalid {
            key,
            reason: "the URL has no host".into(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs; refuse them.
        return Err(ConfigError::Invalid {
            key,
            reason: "credentials in the URL are not allowed".into(),
        });
    }
    Ok(url)
}

/// Decodes `ApprovalHTTPPublicKeyHex`: hex of the PEM text of an Ed25519 public key.
pub fn parse_public_key_hex(s: &str) -> Result<VerifyingKey, ConfigError> {
    let key = keys::PUBLIC_KEY_HEX;
    let s = s.trim();
    let bytes = hex::decode(s).map_err(|e| ConfigError::Invalid {
        key,
        reason: if s.starts_with("-----BEGIN") {
            "expected the hex encoding of the PEM text, not the PEM text itself".into()
        } else {
            format!("not hex: {e}")
        },
    })?;
    let pem = String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
        key,
        reason: "the hex does not decode to PEM text".into(),
    })?;
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("not a PEM Ed25519 public key (SubjectPublicKeyInfo): {e}"),
    })
}

/// Encodes an approver's reply key as `ApprovalHTTPPublicKeyHex` expects it: hex of its PEM
/// text (the inverse of [`parse_public_key_hex`]).
pub fn public_key_hex(key: &VerifyingKey) -> String {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    // Encoding a 32-byte key as SubjectPublicKeyInfo cannot fail; an empty string would be
    // refused by parse_public_key_hex, never accepted.
    hex::encode(key.to_public_key_pem(LineEnding::LF).unwrap_or_default())
}

impl ApprovalConfig {
    /// Validates raw values. Errors name the configuration key at fault.
    pub fn from_values(v: &ApprovalValues) -> Result<Self, ConfigError> {
        let mode: ApprovalMode = value(&v.approval_mode)
            .ok_or(ConfigError::Missing {
                key: keys::APPROVAL_MODE,
                mode: "unset",
            })?
            .parse()?;
        let timeout = match value(&v.approval_timeout_seconds) {
            None => DEFAULT_TIMEOUT,
            Some(s) => {
                let secs: f64 = s.parse().map_err(|_| ConfigError::Invalid {
                    key: keys::TIMEOUT_SECONDS,
                    reason: format!("{s:?} is not a number of seconds"),
                })?;
                if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECONDS) {
                    return Err(ConfigError::Invalid {
                        key: keys::TIMEOUT_SECONDS,
                        reason: format!("must be > 0 and <= {MAX_TIMEOUT_SECONDS}"),
                    });
                }
                Duration::from_secs_f64(secs)
            }
        };
        let retries = match value(&v.approval_retries) {
            None => DEFAULT_RETRIES,
            Some(s) => s
                .parse()
                .ok()
                .filter(|r| *r <= MAX_RETRIES)
                .ok_or_else(|| ConfigError::Invalid {
                    key: keys::RETRIES,
                    reason: format!("{s:?} is not a whole number from 0 to {MAX_RETRIES}"),
                })?,
        };
        let mode = match mode {
            ApprovalMode::AlwaysApprove => ModeConfig::AlwaysApprove,
            ApprovalMode::Api => {
                let accept_insecure = flag(&v.approval_accept_insecure, keys::ACCEPT_INSECURE)?;
                let transaction_url = http_url(
                    required(&v.external_transaction_approval_url, keys::TRANSACTION_URL, mode)?,
                    keys::TRANSACTION_URL,
                )?;
                let reshare_url = http_url(
                    required(&v.external_reshare_approval_url, keys::RESHARE_URL, mode)?,
                    keys::RESHARE_URL,
                )?;
                let reply_public_key = value(&v.approval_http_public_key_hex)
                    .map(parse_public_key_hex)
                    .transpose()?;
                // Answers anyone on the network path could give approve nothing, unless
                // the operator says it accepts that.
                let mut insecurities = Vec::new();
                for (key, url) in [
                    (keys::TRANSACTION_URL, &transaction_url),
                    (keys::RESHARE_URL, &reshare_url),
                ] {
                    if url.scheme() == "http" && !is_loopback(url) {
                        let host = url.host_str().unwrap_or_default();
                        if !accept_insecure {
                            return Err(ConfigError::Invalid {
                                key,
                                reason: format!(
                                    "plain http:// to {host} lets anyone on the network path read the approval requests and answer them; use https:// (or set {} = true to accept that)",
                                    keys::ACCEPT_INSECURE
                                ),
                            });
                        }
                        insecurities.push(format!("{key} uses plain http to {host}"));
                    }
                }
                if reply_public_key.is_none() {
                    if !accept_insecure {
                        return Err(ConfigError::Invalid {
                            key: keys::PUBLIC_KEY_HEX,
                            reason: format!(
                                "must be set when ApprovalMode is API: without it replies are unsigned, and anyone on the network path approves by echoing the nonce (set {} = true to accept that)",
                                keys::ACCEPT_INSECURE
                            ),
                        });
                    }
                    insecurities.push(format!(
                        "replies are unsigned ({} is not set)",
                        keys::PUBLIC_KEY_HEX
                    ));
                }
                ModeConfig::Api(ApiConfig {
                    transaction_url,
                    reshare_url,
                    reply_public_key,
                    insecurities,
                })
            }
            ApprovalMode::SmartContract => {
                let rpc_url = http_url(
                    required(&v.approval_node_rpc_address, keys::NODE_RPC, mode)?,
                    keys::NODE_RPC,
                )?;
                let a = required(&v.approval_smart_contract_address, keys::CONTRACT_ADDRESS, mode)?;
                let address = parse_address(a)?;
                let chain_id = value(&v.approval_chain_id)
                    .map(|s| {
                        s.parse::<u64>()
                            .ok()
                            .filter(|c| *c > 0)
                            .ok_or_else(|| ConfigError::Invalid {
                                key: keys::CHAIN_ID,
                                reason: format!("{s:?} is not a chain id (a whole number above 0)"),
                            })
                    })
                    .transpose()?;
                let code_hash = value(&v.approval_contract_code_hash)
                    .map(|s| {
                        hex::decode(s.strip_prefix("0x").unwrap_or(s))
                            .ok()
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| ConfigError::Invalid {
                                key: keys::CONTRACT_CODE_HASH,
                                reason: "expected the hex SHA-256 (32 bytes) of the contract's runtime code"
                                    .into(),
                            })
                    })
                    .transpose()?;
                let layout = match value(&v.approval_contract_layout) {
                    None => ContractLayout::default(),
                    Some(s) if s.eq_ignore_ascii_case("iofinnet") => ContractLayout::IoFinnet,
                    Some(s) if s.eq_ignore_ascii_case("vsigner-v3") => ContractLayout::VsignerV3,
                    Some(s) => {
                        return Err(ConfigError::Invalid {
                            key: keys::CONTRACT_LAYOUT,
                            reason: format!("{s:?} is not a layout: expected iofinnet or vsigner-v3"),
                        })
                    }
                };
                ModeConfig::SmartContract(ContractConfig {
                    rpc_url,
                    address,
                    chain_id,
                    code_hash,
                    layout,
                })
            }
            ApprovalMode::Human => ModeConfig::Human(crate::human::HumanConfig::from_values(
                required(&v.human_approval_passkeys_file, keys::HUMAN_PASSKEYS_FILE, mode)?,
                value(&v.human_approval_quorum),
                required(&v.human_approval_origin, keys::HUMAN_ORIGIN, mode)?,
                value(&v.human_approval_rp_id),
            )?),
        };
        Ok(Self {
            mode,
            timeout,
            retries,
        })
    }

    /// The approval mode.
    pub fn approval_mode(&self) -> ApprovalMode {
        match self.mode {
            ModeConfig::AlwaysApprove => ApprovalMode::AlwaysApprove,
            ModeConfig::Api(_) => ApprovalMode::Api,
            ModeConfig::SmartContract(_) => ApprovalMode::SmartContract,
            ModeConfig::Human(_) => ApprovalMode::Human,
        }
    }
}

/// `true` or `false` (unset: false).
fn flag(v: &Option<String>, key: &'static str) -> Result<bool, ConfigError> {
    match value(v) {
        None => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(s) => Err(ConfigError::Invalid {
            key,
            reason: format!("{s:?} is not true or false"),
        }),
    }
}

/// Whether `url` points at this machine (loopback: the operator's own process).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_address(s: &str) -> Result<Address, ConfigError> {
    let key = keys::CONTRACT_ADDRESS;
    let hex_part = s.strip_prefix("0x").ok_or_else(|| ConfigError::Invalid {
        key,
        reason: "expected 0x followed by 40 hex digits".into(),
    })?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::Invalid {
            key,
            reason: "expected 0x followed by 40 hex digits".into(),
        });
    }
    let mixed =
        hex_part.bytes().any(|b| b.is_ascii_lowercase()) && hex_part.bytes().any(|b| b.is_ascii_uppercase());
    if mixed {
        // Mixed case means EIP-55: a typo must not send approvals to another address.
        Address::parse_checksummed(s, None).map_err(|_| ConfigError::Invalid {
            key,
            reason: "EIP-55 checksum mismatch".into(),
        })
    } else {
        Address::from_str(s).map_err(|e| ConfigError::Invalid {
            key,
            reason: e.to_string(),
        })
    }
}
