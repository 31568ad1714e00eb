//! Broadcaster: hands a signed Ethereum transaction to an EVM JSON-RPC endpoint
//! (`eth_sendRawTransaction`) configured for its chain id.

use std::collections::HashMap;
use std::time::Duration;

/// JSON-RPC endpoints by chain id.
#[derive(Clone)]
pub struct Broadcaster {
    endpoints: HashMap<u64, String>,
    http: reqwest::Client,
}

impl Default for Broadcaster {
    /// A broadcaster with no endpoint (signed transactions are not sent anywhere).
    fn default() -> Self {
        Self::new([])
    }
}

impl Broadcaster {
    /// A broadcaster for `(chain id, URL)` pairs.
    pub fn new(endpoints: impl IntoIterator<Item = (u64, String)>) -> Self {
        // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self {
            endpoints: endpoints.into_iter().collect(),
            http,
        }
    }

    /// Whether an endpoint is configured for `chain_id`.
    pub fn has(&self, chain_id: u64) -> bool {
        self.endpoints.contains_key(&chain_id)
    }

    /// Sends `raw_tx` (`0x…`); returns the transaction hash or an error message.
    pub async fn send(&self, chain_id: u64, raw_tx: &str) -> Result<String, String> {
        let url = self
            .endpoints
            .get(&chain_id)
            .ok_or_else(|| format!("no RPC for chain {chain_id}"))?;
        // The URL may carry an API key (path or query): errors name only scheme and host.
        let endpoint = endpoint_name(url);
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw_tx]});
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("RPC request to {endpoint} failed: {}", error_text(e)))?;
        let status = resp.status();
        let value: serde_json::Value = resp.json().await.map_err(|e| {
            format!(
                "RPC reply from {endpoint} is not JSON (HTTP {status}): {}",
                error_text(e)
            )
        })?;
        if let Some(err) = value.get("error") {
            return Err(format!("RPC error: {err}"));
        }
        value
            .get("result")
            .and_then(|r| r.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("RPC reply from {endpoint} has no result (HTTP {status})"))
    }
}

/// `scheme://host` of an endpoint URL: no port, path, query or credentials.
fn endpoint_name(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "the configured endpoint".to_owned(),
    }
}

/// A reqwest error without its URL, with its causes (which carry no URL).
fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_do_not_leak_the_rpc_url() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let secret = "k3y-S3CR3T-path-segment";
        let url = format!("http://127.0.0.1:{port}/v3/{secret}?apikey={secret}");
        let b = Broadcaster::new([(1u64, url)]);
        let err = b.send(1, "0x02").await.err().unwrap_or_default();
        assert!(!err.is_empty(), "expected an error");
        assert!(!err.contains(secret), "RPC URL leaked: {err}");
        assert!(!err.contains("/v3"), "RPC URL path leaked: {err}");
        assert!(err.contains("http://127.0.0.1"), "{err}");
    }
}
