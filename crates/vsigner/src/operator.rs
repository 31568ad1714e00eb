//! The operator's side of the coordinator's GraphQL API, shared by the command-line client
//! (`vsigner vault|op|device|client`), the demo and `bench e2e`: create vaults, request
//! signatures and reshares, read vaults, operations and devices, wait for an operation to
//! end, and manage API clients.
//!
//! Objects are kept as JSON (the coordinator's field names), which is what `--json` prints.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use vsigner_signer::coordinator_api::CoordinatorClient;

/// The fields of a vault the operator sees.
pub(crate) const VAULT: &str = "id name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress taprootOutputKey taprootAddress createdAt";
/// The fields of an operation the operator sees.
pub(crate) const OPERATION: &str = "id kind state vaultId curve createdAt updatedAt expiresAt approvedWeight requiredWeight \
    votes { deviceId vote at } committee { deviceId name index oldIndex newIndex } \
    sign { payloadKind payload signingDigest derivationPath taproot { merkleRoot } chainId keyGeneration presignatureId } \
    reshare { oldThreshold newThreshold newSigners { deviceId index } oldKeyGeneration } \
    presign { keyGeneration consumedBy } \
    result { publicKey chainCode keyGeneration keySetHash signature recoveryId submittedBy rawTransaction txHash broadcastError } \
    failure { reason culpritDeviceIds reportedBy } rejectionReason";
/// The fields of a device the operator sees.
pub(crate) const DEVICE: &str = "id name kind identitySigningKey identityEncryptionKey status createdAt";

/// The fields of an API client the operator sees (never a secret).
pub(crate) const API_CLIENT: &str = "clientId role createdAt rotatedAt previousSecretValidUntil revokedAt";

/// States after which an operation never changes.
pub(crate) const FINAL_STATES: [&str; 4] = ["Completed", "Failed", "Rejected", "Expired"];

/// `value` as a string, or `-`.
pub(crate) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// An operator (or any API client) of the coordinator.
pub(crate) struct Operator {
    client: CoordinatorClient,
}

impl Operator {
    pub(crate) fn new(client: CoordinatorClient) -> Self {
        Operator { client }
    }

    /// The data of a query without variables.
    pub(crate) async fn query(&self, query: &str) -> anyhow::Result<Value> {
        Ok(self.client.execute(query, json!({})).await?)
    }

    async fn field(&self, query: &str, vars: Value, name: &str) -> anyhow::Result<Value> {
        let mut data = self.client.execute(query, vars).await?;
        Ok(data[name].take())
    }

    /// `createVault`: the keygen operation.
    pub(crate) async fn create_vault(
        &self,
        name: &str,
        curve: &str,
        threshold: u16,
        signers: &[String],
    ) -> anyhow::Result<Value> {
        self.field(
            &format!("mutation($i: CreateVaultInput!) {{ createVault(input: $i) {{ {OPERATION} }} }}"),
            json!({"i": {"name": name, "curve": curve, "threshold": threshold, "signers": signer_inputs(signers)}}),
            "createVault",
        )
        .await
    }

    /// `requestSignature` with `input` (`vaultId` and one of `digest`, `ethTx`, `message`,
    /// optionally `derivationPath`).
    pub(crate) async fn request_signature(&self, input: Value) -> anyhow::Result<Value> {
        self.field(
            &format!(
                "mutation($i: RequestSignatureInput!) {{ requestSignature(input: $i) {{ {OPERATION} }} }}"
            ),
            json!({"i": input}),
            "requestSignature",
        )
        .await
    }

    /// `requestReshare` to `signers` (in share-index order) with `threshold`.
    pub(crate) async fn request_reshare(
        &self,
        vault: &str,
        threshold: u16,
        signers: &[String],
    ) -> anyhow::Result<Value> {
        self.field(
            &format!("mutation($i: RequestReshareInput!) {{ requestReshare(input: $i) {{ {OPERATION} }} }}"),
            json!({"i": {"vaultId": vault, "newThreshold": threshold, "newSigners": signer_inputs(signers)}}),
            "requestReshare",
        )
        .await
    }

    pub(crate) async fn vaults(&self) -> anyhow::Result<Value> {
        self.field(&format!("{{ vaults {{ {VAULT} }} }}"), json!({}), "vaults")
            .await
    }

    pub(crate) async fn vault(&self, id: &str) -> anyhow::Result<Value> {
        self.field(
            &format!("query($id: ID!) {{ vault(id: $id) {{ {VAULT} }} }}"),
            json!({"id": id}),
            "vault",
        )
        .await
    }

    pub(crate) async fn operation(&self, id: &str) -> anyhow::Result<Value> {
        self.field(
            &format!("query($id: ID!) {{ operation(id: $id) {{ {OPERATION} }} }}"),
            json!({"id": id}),
            "operation",
        )
        .await
    }

    /// Operations of a vault of one kind (`Keygen`, `Sign`, `Reshare`, `Presign`), newest
    /// first (at most 1000).
    pub(crate) async fn operations_of(&self, vault: &str, kind: &str) -> anyhow::Result<Value> {
        self.field(
            &format!("query($f: OperationFilter) {{ operations(filter: $f) {{ {OPERATION} }} }}"),
            json!({"f": {"vaultId": vault, "kind": kind, "limit": 1000}}),
            "operations",
        )
        .await
    }

    /// Every operation of a vault of one kind, newest first, read 1000 at a time.
    pub(crate) async fn all_operations_of(&self, vault: &str, kind: &str) -> anyhow::Result<Vec<Value>> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        loop {
            let page = self
                .field(
                    &format!("query($f: OperationFilter) {{ operations(filter: $f) {{ {OPERATION} }} }}"),
                    json!({"f": {"vaultId": vault, "kind": kind, "limit": PAGE, "offset": all.len()}}),
                    "operations",
                )
                .await?;
            let page = match page {
                Value::Array(page) => page,
                other => bail!("the coordinator listed operations as {other}"),
            };
            let last = page.len() < PAGE;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// The organisation's API clients.
    pub(crate) async fn api_clients(&self) -> anyhow::Result<Value> {
        self.field(
            &format!("{{ apiClients {{ {API_CLIENT} }} }}"),
            json!({}),
            "apiClients",
        )
        .await
    }

    /// `createConsoleUser`: the new web console user's id and its password (shown once).
    pub(crate) async fn create_console_user(&self, name: &str, role: &str) -> anyhow::Result<Value> {
        self.field(
            "mutation($n: String!, $r: String!) { createConsoleUser(name: $n, role: $r) { user { id name role } password } }",
            json!({"n": name, "r": role}),
            "createConsoleUser",
        )
        .await
    }

    /// `createApiClient`: the new client's id, role and secret.
    pub(crate) async fn create_api_client(&self, role: &str) -> anyhow::Result<Value> {
        self.field(
            "mutation($r: String!) { createApiClient(role: $r) { clientId role clientSecret } }",
            json!({"r": role}),
            "createApiClient",
        )
        .await
    }

    /// `rotateApiClientSecret`: the client's id, role and new secret.
    pub(crate) async fn rotate_api_client_secret(
        &self,
        id: &str,
        overlap_secs: Option<u32>,
    ) -> anyhow::Result<Value> {
        self.field(
            "mutation($id: ID!, $o: Int) { rotateApiClientSecret(clientId: $id, overlapSeconds: $o) { clientId role clientSecret } }",
            json!({"id": id, "o": overlap_secs}),
            "rotateApiClientSecret",
        )
        .await
    }

    /// `revokeApiClient`: the revoked client.
    pub(crate) async fn revoke_api_client(&self, id: &str) -> anyhow::Result<Value> {
        self.field(
            &format!("mutation($id: ID!) {{ revokeApiClient(clientId: $id) {{ {API_CLIENT} }} }}"),
            json!({"id": id}),
            "revokeApiClient",
        )
        .await
    }

    pub(crate) async fn devices(&self) -> anyhow::Result<Value> {
        self.field(&format!("{{ devices {{ {DEVICE} }} }}"), json!({}), "devices")
            .await
    }

    /// Operation `id` once it leaves `state` (any state when empty) or is final, or as it
    /// is after `seconds` (`waitForOperation`: the coordinator answers when the operation
    /// changes). When the coordinator has too many waiting already, the operation as it is
    /// a moment later.
    pub(crate) async fn wait_for_operation(
        &self,
        id: &str,
        state: &str,
        seconds: u64,
    ) -> anyhow::Result<Value> {
        let q = format!(
            "query($id: ID!, $s: Int!, $st: String) {{ waitForOperation(id: $id, seconds: $s, state: $st) {{ {OPERATION} }} }}"
        );
        let vars = json!({"id": id, "s": seconds, "st": (!state.is_empty()).then_some(state)});
        match self.client.execute(&q, vars).await {
            Ok(mut data) => Ok(data["waitForOperation"].take()),
            Err(e) if e.code() == Some("TOO_MANY_REQUESTS") => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.operation(id).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until operation `id` reaches a final state (returned, whatever it is) or
    /// `timeout` passes (an error).
    pub(crate) async fn wait_final(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            // Well within the client's request timeout.
            let left = timeout.saturating_sub(start.elapsed()).as_secs().clamp(1, 20);
            let op = self.wait_for_operation(id, "", left).await?;
            let state = text(&op["state"]);
            if FINAL_STATES.contains(&state) {
                return Ok(op);
            }
            if start.elapsed() > timeout {
                bail!("operation {id} is still {state} after {} s", timeout.as_secs());
            }
        }
    }

    /// [`Operator::wait_final`], and `on_state` sees each new state (one request per change
    /// of state).
    pub(crate) async fn wait_final_showing(
        &self,
        id: &str,
        timeout: Duration,
        mut on_state: impl FnMut(&str, Duration),
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let op = if last.is_empty() {
                self.operation(id).await?
            } else {
                let left = timeout.saturating_sub(start.elapsed()).as_secs().clamp(1, 20);
                self.wait_for_operation(id, &last, left).await?
            };
            let state = text(&op["state"]).to_owned();
            if state != last {
                on_state(&state, start.elapsed());
                last.clone_from(&state);
            }
            if FINAL_STATES.contains(&state.as_str()) {
                return Ok(op);
            }
            if start.elapsed() > timeout {
                bail!("operation {id} is still {state} after {} s", timeout.as_secs());
            }
        }
    }
}

/// `device` or `device:weight` (the number of shares the device holds; 1 when not given).
fn signer_inputs(ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|d| {
            let d = d.trim();
            match d
                .rsplit_once(':')
                .and_then(|(id, w)| Some((id, w.parse::<u32>().ok()?)))
            {
                Some((id, weight)) => json!({"deviceId": id, "weight": weight}),
                None => json!({"deviceId": d}),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signers_take_an_optional_weight() {
        let given: Vec<String> = ["dev_a:2", " dev_b ", "dev_c:1"].map(str::to_owned).to_vec();
        assert_eq!(
            signer_inputs(&given),
            vec![
                json!({"deviceId": "dev_a", "weight": 2}),
                json!({"deviceId": "dev_b"}),
                json!({"deviceId": "dev_c", "weight": 1}),
            ]
        );
        // Not a number: the whole text is the device id (the coordinator names it unknown).
        assert_eq!(
            signer_inputs(&["dev_a:x".to_owned()]),
            vec![json!({"deviceId": "dev_a:x"})]
        );
    }
}
