//! `Human` mode: people approve with passkeys, and the device checks their signatures itself.
//!
//! # The exchange
//! 1. The device builds the approval request as for a webhook and posts its exact bytes
//!    ([`ApprovalRequest::to_json_bytes`]) to a [`HumanDesk`]: the coordinator, where people
//!    read it in the console.
//! 2. A person answers *approve* or *reject* with a WebAuthn assertion (a passkey,
//!    user verification required) whose challenge is [`challenge`]`(verdict, bytes)`: the
//!    SHA-256 of a domain tag, the verdict and the request bytes.
//! 3. The device reads the answers from the desk and checks each one itself, with
//!    webauthn-rs-core's assertion checks, against the passkeys in **its own
//!    configuration** ([`HumanConfig`]) and against the challenge it computes from **its own
//!    request bytes**. It counts distinct passkeys ([`HumanApprover::tally`]).
//!
//! # Why the device can trust it
//! - The coordinator (the desk) holds no passkey: it cannot make an assertion. Passkeys it
//!   lists or registers mean nothing to a device whose configuration does not name them.
//! - An assertion over another request, or over a request the coordinator altered before
//!   showing it to the person, has another challenge: it is refused.
//! - The verdict is inside the challenge. The issue asked for the hash of the request alone;
//!   then one assertion would serve as an approval and as a rejection, and the coordinator
//!   could turn a person's "reject" into an "approve". Binding the verdict prevents that.
//! - The request carries the operation id, the vault, its signers and the payload, so an
//!   answer cannot be moved to another operation. Replaying an answer to the same request is
//!   harmless: it says again what the person said.
//! - A forged or unreadable answer is refused and named in the reason; it neither approves
//!   nor rejects (the coordinator must not be able to block a vote by adding garbage).
//!
//! # Why a derived challenge
//! WebAuthn login uses a random challenge that the server remembers. Here the assertion is a
//! signature over a statement, made once and checked by every device that needs it, later
//! and elsewhere, so the challenge is the statement's hash (as in "transaction
//! confirmation" uses of WebAuthn). webauthn-rs-core takes its challenge from an
//! `AuthenticationState`, a type it documents as made for persistence; [`HumanApprover`]
//! builds one with the derived challenge and otherwise runs the crate's checks unchanged.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;
use webauthn_rs_core::proto::{AuthenticationState, Credential, PublicKeyCredential};
use webauthn_rs_core::WebauthnCore;

use crate::config::{keys, ApprovalMode};
use crate::decision::{Decision, Vote};
use crate::error::ConfigError;
use crate::request::ApprovalRequest;

#[cfg(feature = "soft-passkey")]
pub mod soft_passkey;

/// The domain tag that starts every challenge (version 1).
pub const CHALLENGE_TAG: &[u8] = b"vsigner human approval v1\0";
/// Largest assertion read (a WebAuthn assertion is well under 4 KiB).
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;
/// Most answers read for one request (a desk that lists more is cut short).
pub const MAX_ANSWERS: usize = 2 * MAX_PASSKEYS;
/// Refusals named in a decision's reason (the rest are counted).
const REFUSALS_SHOWN: usize = 3;
/// Most passkeys one device accepts.
pub const MAX_PASSKEYS: usize = 64;

/// What a person answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Sign, create or reshare as asked.
    Approve,
    /// Do not.
    Reject,
}

impl Verdict {
    /// `approve` or `reject`: the spelling inside the challenge and in the GraphQL API.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WebAuthn challenge a person's passkey signs to give `verdict` on the request whose
/// exact bytes are `request`: SHA-256(`CHALLENGE_TAG` ‖ verdict ‖ 0 ‖ request).
pub fn challenge(verdict: Verdict, request: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHALLENGE_TAG);
    h.update(verdict.as_str().as_bytes());
    h.update([0u8]);
    h.update(request);
    h.finalize().into()
}

/// One answer as the desk hands it over: the verdict it claims and the assertion (the JSON
/// of a WebAuthn `PublicKeyCredential`, as the browser's `toJSON()` gives it). Nothing here
/// is trusted until [`HumanApprover::check`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanAnswer {
    /// The verdict the answer claims.
    pub verdict: Verdict,
    /// The assertion, as JSON.
    pub assertion: String,
}

/// The future returned by a [`HumanDesk`].
pub type DeskFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where requests are shown to people and their answers collected (the coordinator). It is
/// not trusted: what it returns is checked by [`HumanApprover`].
pub trait HumanDesk: Send + Sync + fmt::Debug {
    /// Shows `request` (the exact bytes the answers must sign) for `operation_id`, with the
    /// ids of the passkeys whose answers the device reads (the desk keeps no others).
    /// Posting the same again is harmless.
    fn post<'a>(
        &'a self,
        operation_id: &'a str,
        request: &'a [u8],
        passkeys: &'a [String],
    ) -> DeskFuture<'a, ()>;
    /// The answers people gave for `operation_id` so far.
    fn answers<'a>(&'a self, operation_id: &'a str) -> DeskFuture<'a, Vec<HumanAnswer>>;
}

/// A person's passkey, as registered: a name for messages and the WebAuthn credential
/// (credential id and public key; no secret).
#[derive(Clone)]
pub struct Passkey {
    /// Who holds it, for messages and the audit log.
    pub name: String,
    credential: Credential,
}

impl Passkey {
    /// A passkey from a registered credential.
    pub fn new(name: impl Into<String>, credential: Credential) -> Self {
        Self {
            name: name.into(),
            credential,
        }
    }

    /// The credential id, base64url.
    pub fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.credential.cred_id.as_slice())
    }

    /// The registered credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
}

impl fmt::Debug for Passkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passkey")
            .field("name", &self.name)
            .field("id", &self.id())
            .finish()
    }
}

impl PartialEq for Passkey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.credential.cred_id == other.credential.cred_id
    }
}

impl Eq for Passkey {}

/// The `HumanApprovalPasskeysFile` format: `{"passkeys": [{"name": "…", "passkey":
/// {"cred": …}}]}`, where `passkey` is webauthn-rs's serialised `Passkey` (what a
/// registration produces).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasskeysFile {
    passkeys: Vec<PasskeyEntry>,
}

#[derive(Deserialize)]
struct PasskeyEntry {
    name: String,
    passkey: PasskeyJson,
}

#[derive(Deserialize)]
struct PasskeyJson {
    cred: Credential,
}

/// `Human` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanConfig {
    /// The passkeys whose holders may answer for this device (`HumanApprovalPasskeysFile`).
    pub passkeys: Vec<Passkey>,
    /// How many distinct passkeys must approve (`HumanApprovalQuorum`, default 1).
    pub quorum: usize,
    /// The console's origin, as the browser reports it (`HumanApprovalOrigin`).
    pub origin: Url,
    /// The WebAuthn relying-party id (`HumanApprovalRpId`; default: the origin's host).
    pub rp_id: String,
    /// Where the passkeys were read from, for messages.
    pub passkeys_file: PathBuf,
    /// What the operator accepted with `ApprovalAcceptInsecure` (set by the daemon's
    /// configuration: an origin the coordinator serves).
    pub insecurities: Vec<String>,
}

impl HumanConfig {
    /// Validates the `Human` keys; reads the passkeys file.
    pub fn from_values(
        passkeys_file: &str,
        quorum: Option<&str>,
        origin: &str,
        rp_id: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let passkeys_file = PathBuf::from(passkeys_file);
        let passkeys = read_passkeys(&passkeys_file)?;
        let quorum = match quorum {
            None => 1,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|q| *q >= 1)
                .ok_or_else(|| ConfigError::Invalid {
                    key: keys::HUMAN_QUORUM,
                    reason: format!("{s:?} is not a whole number of at least 1"),
                })?,
        };
        if quorum > passkeys.len() {
            return Err(ConfigError::Invalid {
                key: keys::HUMAN_QUORUM,
                reason: format!(
                    "{quorum} approvals can never come from the {} passkeys in {}",
                    passkeys.len(),
                    passkeys_file.display()
                ),
            });
        }
        let invalid_origin = |reason: String| ConfigError::Invalid {
            key: keys::HUMAN_ORIGIN,
            reason,
        };
        let origin = Url::parse(origin).map_err(|e| invalid_origin(format!("not a URL: {e}")))?;
        let host = origin.host_str().unwrap_or_default().to_string();
        if host.is_empty() || !matches!(origin.scheme(), "https" | "http") {
            return Err(invalid_origin(
                "expected the console's origin, such as https://console.example.com".into(),
            ));
        }
        // Browsers offer WebAuthn only on https:// origins and on http://localhost.
        if origin.scheme() == "http" && host != "localhost" {
            return Err(invalid_origin(format!(
                "browsers refuse passkeys on plain http:// except for localhost; use https://{host}"
            )));
        }
        if origin.path() != "/" || origin.query().is_some() || origin.fragment().is_some() {
            return Err(invalid_origin(
                "an origin is a scheme, a host and a port only: remove the path".into(),
            ));
        }
        let rp_id = match rp_id {
            None => host,
            Some(id) => {
                // The RP id must be the origin's host or a registrable suffix of it.
                if !(id == host || host.ends_with(&format!(".{id}"))) {
                    return Err(ConfigError::Invalid {
                        key: keys::HUMAN_RP_ID,
                        reason: format!("{id:?} is not {host} or a domain it belongs to"),
                    });
                }
                id.to_string()
            }
        };
        Ok(Self {
            passkeys,
            quorum,
            origin,
            rp_id,
            passkeys_file,
            insecurities: Vec::new(),
        })
    }
}

fn read_passkeys(path: &Path) -> Result<Vec<Passkey>, ConfigError> {
    let key = keys::HUMAN_PASSKEYS_FILE;
    let invalid = |reason: String| ConfigError::Invalid { key, reason };
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let file: PasskeysFile = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{} is not a passkeys file ({{\"passkeys\": [{{\"name\": …, \"passkey\": …}}]}}): {e}",
            path.display()
        ))
    })?;
    if file.passkeys.is_empty() {
        return Err(invalid(format!("{} lists no passkey", path.display())));
    }
    if file.passkeys.len() > MAX_PASSKEYS {
        return Err(invalid(format!(
            "{} lists {} passkeys; at most {MAX_PASSKEYS}",
            path.display(),
            file.passkeys.len()
        )));
    }
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut out = Vec::with_capacity(file.passkeys.len());
    for entry in file.passkeys {
        let name = entry.name.trim().to_string();
        if name.is_empty() || name.chars().any(char::is_control) || name.len() > 100 {
            return Err(invalid(format!(
                "{}: every passkey needs a name of 1 to 100 printable characters",
                path.display()
            )));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(format!(
                "{}: the name {name:?} appears twice",
                path.display()
            )));
        }
        let passkey = Passkey::new(name, entry.passkey.cred);
        // An assertion's signature does not cover the credential id: two entries with one
        // public key would let one person's answer count twice.
        let key = serde_json::to_string(&passkey.credential.cred).unwrap_or_default();
        if !ids.insert(passkey.id()) || !keys.insert(key) {
            return Err(invalid(format!(
                "{}: the passkey of {:?} appears twice (one key counts once)",
                path.display(),
                passkey.name
            )));
        }
        out.push(passkey);
    }
    Ok(out)
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Asks people through a [`HumanDesk`] and checks their passkey assertions.
pub struct HumanApprover {
    config: HumanConfig,
    webauthn: WebauthnCore,
    desk: Arc<dyn HumanDesk>,
}

impl fmt::Debug for HumanApprover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HumanApprover")
            .field("config", &self.config)
            .field("desk", &self.desk)
            .finish()
    }
}

impl HumanApprover {
    /// An approver that posts requests to `desk` and accepts the passkeys of `config`.
    pub fn new(config: HumanConfig, desk: Arc<dyn HumanDesk>) -> Self {
        let webauthn = WebauthnCore::new_unsafe_experts_only(
            "vsigner",
            &config.rp_id,
            vec![config.origin.clone()],
            Duration::from_secs(300),
            Some(false),
            Some(false),
        );
        Self {
            config,
            webauthn,
            desk,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HumanConfig {
        &self.config
    }

    /// Posts the request, reads the answers and counts them. Never fails: while too few
    /// people have answered, or the desk cannot be reached, the decision is "unavailable"
    /// (no vote; the daemon asks again until the operation expires).
    ///
    /// The answers are read even when the request cannot be posted: a daemon that restarted
    /// after people approved asks again once the operation is Ready, when the coordinator
    /// no longer takes requests, and the answers given before still decide.
    pub async fn decide(&self, request: &ApprovalRequest) -> Decision {
        let body = request.to_json_bytes();
        let operation = request.operation_id.as_str();
        let ids: Vec<String> = self.config.passkeys.iter().map(Passkey::id).collect();
        let posted = self.desk.post(operation, &body, &ids).await;
        match self.desk.answers(operation).await {
            Ok(answers) => {
                let decision = self.tally(operation, &body, &answers);
                match posted {
                    Err(e) if decision.retry => Decision::unavailable(
                        ApprovalMode::Human,
                        format!(
                            "{}; the request could not be shown to people: {e}",
                            decision.reason
                        ),
                    ),
                    _ => decision,
                }
            }
            Err(e) => {
                Decision::unavailable(ApprovalMode::Human, format!("cannot read people's answers: {e}"))
            }
        }
    }

    /// Checks one answer against the request bytes: the passkey it names must be one of
    /// this device's, the assertion must pass every WebAuthn check (user verification
    /// required) with the challenge of its claimed verdict. Returns the passkey's index.
    pub fn check(&self, request: &[u8], answer: &HumanAnswer) -> Result<usize, Refusal> {
        if answer.assertion.len() > MAX_ASSERTION_BYTES {
            return Err(Refusal(format!(
                "an assertion of {} bytes (at most {MAX_ASSERTION_BYTES})",
                answer.assertion.len()
            )));
        }
        let assertion: PublicKeyCredential = serde_json::from_str(&answer.assertion)
            .map_err(|e| Refusal(format!("an assertion that is not a WebAuthn credential: {e}")))?;
        // webauthn-rs-core checks `crossOrigin` at registration only: an assertion made in
        // a frame of another site is refused here.
        let client_data: serde_json::Value =
            serde_json::from_slice(&assertion.response.client_data_json).unwrap_or_default();
        if client_data
            .get("crossOrigin")
            .and_then(serde_json::Value::as_bool)
            == Some(true)
            || client_data.get("topOrigin").is_some()
        {
            return Err(Refusal("an assertion made inside another site's frame".into()));
        }
        let raw_id = assertion.raw_id.as_slice();
        let (index, passkey) = self
            .config
            .passkeys
            .iter()
            .enumerate()
            .find(|(_, p)| p.credential.cred_id.as_slice() == raw_id)
            .ok_or_else(|| {
                Refusal(format!(
                    "an assertion by passkey {}, which is not one of this device's",
                    shown_id(raw_id)
                ))
            })?;
        let state = self
            .state(passkey, &challenge(answer.verdict, request))
            .map_err(|e| Refusal(format!("cannot check {}'s assertion: {e}", passkey.name)))?;
        let result = self
            .webauthn
            .authenticate_single_credential(&assertion, &state, &passkey.credential)
            .map_err(|e| {
                Refusal(format!(
                    "{}'s {} does not verify for this request: {e}",
                    passkey.name, answer.verdict
                ))
            })?;
        if !result.user_verified() {
            // The policy already requires it; checked again because it is the point.
            return Err(Refusal(format!(
                "{}'s {} was not user-verified",
                passkey.name, answer.verdict
            )));
        }
        Ok(index)
    }

    /// Counts the answers for the request whose exact bytes are `request`.
    /// - Approved when at least `quorum` distinct passkeys approve and have not rejected.
    /// - Rejected when so many have rejected that `quorum` approvals can no longer come.
    /// - Otherwise unavailable (asked again later), naming who has answered and any answer
    ///   refused. A refused answer counts for nothing either way.
    pub fn tally(&self, operation: &str, request: &[u8], answers: &[HumanAnswer]) -> Decision {
        let mut approving = BTreeSet::new();
        let mut rejecting = BTreeSet::new();
        let mut refused = Vec::new();
        for answer in answers.iter().take(MAX_ANSWERS) {
            match self.check(request, answer) {
                Ok(i) if answer.verdict == Verdict::Approve => {
                    approving.insert(i);
                }
                Ok(i) => {
                    rejecting.insert(i);
                }
                Err(r) => {
                    tracing::debug!(%operation, refusal = %r, "a person's answer is refused");
                    refused.push(r.0);
                }
            }
        }
        // A person who both approved and rejected counts as rejecting.
        approving.retain(|i| !rejecting.contains(i));
        let names = |set: &BTreeSet<usize>| {
            set.iter()
                .map(|i| self.config.passkeys[*i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let n = self.config.passkeys.len();
        let quorum = self.config.quorum;
        if approving.len() >= quorum {
            tracing::info!(%operation, approved_by = %names(&approving), "approved by people");
            return Decision::answered(ApprovalMode::Human, Vote::Approve, "");
        }
        if n - rejecting.len() < quorum {
            return Decision::answered(
                ApprovalMode::Human,
                Vote::Reject,
                format!("rejected by {}", names(&rejecting)),
            );
        }
        let mut reason = format!("waiting for people: {} of {quorum} approvals", approving.len());
        if !approving.is_empty() {
            reason.push_str(&format!(" (approved by {})", names(&approving)));
        }
        if !rejecting.is_empty() {
            reason.push_str(&format!("; rejected by {}", names(&rejecting)));
        }
        if !refused.is_empty() {
            let shown: Vec<&str> = refused.iter().take(REFUSALS_SHOWN).map(String::as_str).collect();
            reason.push_str(&format!("; refused {}: {}", refused.len(), shown.join("; ")));
            if refused.len() > REFUSALS_SHOWN {
                reason.push_str("; …");
            }
        }
        Decision::unavailable(ApprovalMode::Human, reason)
    }

    /// webauthn-rs-core's state for one check, with the derived challenge and the passkey.
    fn state(
        &self,
        passkey: &Passkey,
        challenge: &[u8; 32],
    ) -> Result<AuthenticationState, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "credentials": [passkey.credential],
            "policy": "required",
            "challenge": URL_SAFE_NO_PAD.encode(challenge),
            "appid": null,
            "allow_backup_eligible_upgrade": false,
        }))
    }
}

/// A credential id for messages: its first 8 bytes, base64url.
fn shown_id(id: &[u8]) -> String {
    let short = &id[..id.len().min(8)];
    format!("{}…", URL_SAFE_NO_PAD.encode(short))
}
