//! Broadcaster: hands a signed Ethereum transaction to an EVM JSON-RPC endpoint
//! (`eth_sendRawTransaction`) configured for its chain id.

use std::collections::HashMap;
use std::time::Duration;

/// JSON-RPC endpoints by chain id.
#[derive(Clone, Default)]
pub struct Broadcaster {
    endpoints: HashMap<u64, String>,
    http: reqwest::Client,
}

impl Broadcaster {
    /// A broadcaster for `(chain id, URL)` pairs.
    pub fn new(endpoints: impl IntoIterator<Item = (u64, String)>) -> Self {
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
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw_tx]});
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("RPC request failed: {e}"))?;
        let status = resp.status();
        let value: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("RPC reply is not JSON (HTTP {status}): {e}"))?;
        if let Some(err) = value.get("error") {
            return Err(format!("RPC error: {err}"));
        }
        value
            .get("result")
            .and_then(|r| r.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("RPC reply has no result (HTTP {status})"))
    }
}
