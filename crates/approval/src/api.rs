//! `API` mode: ask an io.finnet-style webhook.
//!
//! One `POST` of [`ApprovalRequest::to_json`] with `Content-Type: application/json`,
//! `VS-Nonce`, `Accept-Signature`, and vsigner's RFC 9421 request signature
//! (`Content-Digest`, `Signature-Input`, `Signature`). The reply must be 2xx with
//! `{"status":"approved"|"rejected"|"abstain","nonce":N}` echoing the nonce, and, when
//! `ApprovalHTTPPublicKeyHex` is set, signed (see [`crate::httpsig::verify_reply`]).
//! Anything else is not an approval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use crate::config::{ApiConfig, ApprovalMode};
use crate::decision::{Decision, Vote};
use crate::error::ConfigError;
use crate::httpsig::{self, DeviceKey};
use crate::request::{ApprovalRequest, RequestClass};

/// Largest reply body read; a longer one is refused.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(100);

/// Asks a webhook.
#[derive(Debug)]
pub struct ApiApprover {
    config: ApiConfig,
    timeout: Duration,
    retries: u32,
    device: DeviceKey,
    /// TLS settings for `https://` webhooks (the exchange itself: [`crate::webhook_http`]).
    tls: std::sync::Arc<rustls::ClientConfig>,
}

/// What came back, before it is judged.
struct Reply {
    status: u16,
    content_type: Option<String>,
    digest: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

enum AttemptError {
    /// The connection could not be made: nothing was delivered, so a retry is safe.
    Connect(String),
    /// The connection broke before a whole reply: not retried here (the request may have
    /// been delivered), but the approver is only unavailable: asked again later.
    Interrupted(String),
    /// A reply or peer that cannot be trusted: final.
    Other(String),
}

impl ApiApprover {
    /// An approver for `config`, signing its requests with `device`.
    pub fn new(
        config: ApiConfig,
        timeout: Duration,
        retries: u32,
        device: DeviceKey,
    ) -> Result<Self, ConfigError> {
        // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = crate::webhook_http::tls_config().map_err(|reason| ConfigError::Invalid {
            key: crate::config::keys::APPROVAL_MODE,
            reason: format!("cannot set up TLS for the webhook: {reason}"),
        })?;
        if config.reply_public_key.is_none() {
            tracing::warn!(
                "ApprovalHTTPPublicKeyHex is not set: webhook replies are not authenticated; \
                 set it so that only your approval service can approve"
            );
        }
        Ok(Self {
            config,
            timeout,
            retries,
            device,
            tls,
        })
    }

    /// The URL a request goes to.
    pub fn url_for(&self, request: &ApprovalRequest) -> &Url {
        match request.class() {
            RequestClass::KeygenReshare => &self.config.reshare_url,
            RequestClass::Transaction => &self.config.transaction_url,
        }
    }

    /// Asks the webhook. Never fails: a failure is a decision that is not an approval.
    pub async fn decide(&self, request: &ApprovalRequest) -> Decision {
        let url = self.url_for(request);
        let shown = crate::config::shown_url(url, true);
        let body = request.to_json_bytes();
        let nonce = httpsig::new_nonce();
        // `retry`: the webhook was only unavailable (asking again later may get an answer).
        let fail = |reason: String, retry: bool| {
            tracing::warn!(operation = %request.operation_id, webhook = %shown, %reason, retry, "approval failed");
            if retry {
                Decision::unavailable(ApprovalMode::Api, reason)
            } else {
                Decision::failure(ApprovalMode::Api, reason)
            }
        };
        let mut backoff = BACKOFF_START;
        let mut attempt = 0u32;
        let reply = loop {
            attempt += 1;
            match tokio::time::timeout(self.timeout, self.attempt(url, &body, nonce)).await {
                Err(_) => {
                    return fail(
                        format!("webhook {shown} timed out after {}", fmt_duration(self.timeout)),
                        true,
                    )
                }
                Ok(Ok(reply)) => break reply,
                Ok(Err(AttemptError::Interrupted(e))) => {
                    return fail(format!("webhook {shown} request interrupted: {e}"), true)
                }
                Ok(Err(AttemptError::Other(e))) => {
                    return fail(format!("webhook {shown} request failed: {e}"), false)
                }
                Ok(Err(AttemptError::Connect(e))) if attempt > self.retries => {
                    return fail(
                        format!("webhook {shown} unreachable after {attempt} attempt(s): {e}"),
                        true,
                    )
                }
                Ok(Err(AttemptError::Connect(e))) => {
                    tracing::debug!(webhook = %shown, attempt, error = %e, "webhook unreachable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        };
        match self.judge(&reply, nonce) {
            Ok(vote) => {
                let reason = match vote {
                    Vote::Approve => String::new(),
                    Vote::Reject => format!("webhook {shown} rejected the operation"),
                    Vote::Abstain => format!("webhook {shown} abstained"),
                };
                tracing::info!(operation = %request.operation_id, vote = %vote, "webhook answered");
                Decision::answered(ApprovalMode::Api, vote, reason)
            }
            Err(e) => {
                // A server error or "too many requests" may pass; any other answer that cannot
                // be trusted is final.
                let retry = reply.status >= 500 || reply.status == 429;
                fail(format!("webhook {shown}: {e}"), retry)
            }
        }
    }

    async fn attempt(&self, url: &Url, body: &[u8], nonce: u64) -> Result<Reply, AttemptError> {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let h = httpsig::sign_request(&self.device, url.as_str(), body, nonce, created);
        // io.finnet's spelling of each name (handlers look some up by exact case).
        let headers = [
            ("Content-Type", h.content_type),
            ("VS-Nonce", h.vs_nonce.as_str()),
            ("Accept-Signature", h.accept_signature.as_str()),
            ("Content-Digest", h.content_digest.as_str()),
            ("Signature-Input", h.signature_input.as_str()),
            ("Signature", h.signature.as_str()),
        ];
        let reply = crate::webhook_http::post(&self.tls, url, &headers, body, MAX_REPLY_BYTES)
            .await
            .map_err(|e| match e {
                crate::webhook_http::ExchangeError::Connect(e) => AttemptError::Connect(e),
                crate::webhook_http::ExchangeError::Interrupted(e) => AttemptError::Interrupted(e),
                crate::webhook_http::ExchangeError::Other(e) => AttemptError::Other(e),
            })?;
        let header = |name: &str| reply.header(name).map(str::to_owned);
        let (content_type, digest, signature) =
            (header("content-type"), header("digest"), header("signature"));
        let status = reply.status;
        let body = reply.body;
        Ok(Reply {
            status,
            content_type,
            digest,
            signature,
            body,
        })
    }

    fn judge(&self, reply: &Reply, nonce: u64) -> Result<Vote, String> {
        if !(200..300).contains(&reply.status) {
            let reason = http::StatusCode::from_u16(reply.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            return Err(format!("answered HTTP {}{reason}", reply.status));
        }
        if let Some(key) = &self.config.reply_public_key {
            httpsig::verify_reply(
                key,
                reply.content_type.as_deref(),
                reply.digest.as_deref(),
                reply.signature.as_deref(),
                &reply.body,
            )
            .map_err(|e| e.to_string())?;
        }
        let v: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("the reply is not JSON ({e}): {}", excerpt(&reply.body)))?;
        let status = v
            .get("status")
            .ok_or_else(|| format!("the reply has no \"status\": {}", excerpt(&reply.body)))?
            .as_str()
            .ok_or_else(|| "the reply's \"status\" is not a string".to_owned())?;
        let echoed = match v.get("nonce") {
            None => return Err(format!("the reply has no \"nonce\" (sent {nonce})")),
            Some(n) => n
                .as_u64()
                .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| format!("the reply's \"nonce\" {n} is not a whole number"))?,
        };
        if echoed != nonce {
            return Err(format!(
                "the reply's nonce {echoed} does not match the request's nonce {nonce}"
            ));
        }
        match status {
            "approved" => Ok(Vote::Approve),
            "rejected" => Ok(Vote::Reject),
            "abstain" => Ok(Vote::Abstain),
            other => Err(format!(
                "the reply has unknown status {}",
                excerpt(other.as_bytes())
            )),
        }
    }
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s: String = s.chars().filter(|c| !c.is_control()).take(80).collect();
    format!("{s:?}")
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
