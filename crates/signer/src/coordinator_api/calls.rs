//! The coordinator's queries and mutations, as a device (and the operator CLI) calls them.

use serde_json::{json, Value};

use super::{ApiError, CoordinatorClient, Device, Operation, Vault};

const DEVICE_FIELDS: &str = "id organisationId name kind identitySigningKey identityEncryptionKey status";
const VAULT_FIELDS: &str = "id organisationId name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress";
const OPERATION_FIELDS: &str = "id organisationId kind state vaultId curve nonce createdAt updatedAt expiresAt \
    vault { id organisationId name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress } \
    committee { deviceId name identitySigningKey identityEncryptionKey index oldIndex newIndex } \
    submittedDeviceIds \
    keygen { threshold signers { deviceId weight index } } \
    reshare { oldThreshold oldSigners { deviceId weight index } newThreshold newSigners { deviceId weight index } oldKeyGeneration } \
    sign { payloadKind payload signingDigest derivationPath chainId keyGeneration presignatureId } \
    presign { keyGeneration consumedBy } \
    result { publicKey chainCode keyGeneration keySetHash signature recoveryId submittedBy rawTransaction txHash broadcastError } \
    failure { reason culpritDeviceIds reportedBy } rejectionReason startedBy";

impl CoordinatorClient {
    /// `registerDevice`, idempotent on `idempotency_key`.
    pub async fn register_device(
        &self,
        name: &str,
        signing_key_hex: &str,
        encryption_key_hex: &str,
        idempotency_key: &str,
    ) -> Result<Device, ApiError> {
        let q = format!(
            "mutation($i: RegisterDeviceInput!, $k: String) {{ registerDevice(input: $i, idempotencyKey: $k) {{ {DEVICE_FIELDS} }} }}"
        );
        let vars = json!({"i": {"name": name, "kind": "virtual", "identitySigningKey": signing_key_hex, "identityEncryptionKey": encryption_key_hex}, "k": idempotency_key});
        self.field(&q, vars, "registerDevice").await
    }

    /// Every device of the organisation.
    pub async fn devices(&self) -> Result<Vec<Device>, ApiError> {
        self.field(
            &format!("{{ devices {{ {DEVICE_FIELDS} }} }}"),
            json!({}),
            "devices",
        )
        .await
    }

    /// A vault.
    pub async fn vault(&self, id: &str) -> Result<Vault, ApiError> {
        let q = format!("query($id: ID!) {{ vault(id: $id) {{ {VAULT_FIELDS} }} }}");
        self.field(&q, json!({"id": id}), "vault").await
    }

    /// An operation.
    pub async fn operation(&self, id: &str) -> Result<Operation, ApiError> {
        let q = format!("query($id: ID!) {{ operation(id: $id) {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, json!({"id": id}), "operation").await
    }

    /// Operations this device may still vote on, oldest first.
    pub async fn operations_awaiting_vote(&self, device: &str) -> Result<Vec<Operation>, ApiError> {
        let q = format!("query($d: ID!) {{ operationsAwaitingVote(deviceId: $d) {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, json!({"d": device}), "operationsAwaitingVote")
            .await
    }

    /// Ready or running operations whose committee includes this device, oldest first.
    pub async fn operations_ready(&self, device: &str) -> Result<Vec<Operation>, ApiError> {
        let q = format!("query($d: ID!) {{ operationsReady(deviceId: $d) {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, json!({"d": device}), "operationsReady").await
    }

    async fn act(&self, mutation: &str, args: &str, vars: Value) -> Result<Operation, ApiError> {
        let q = format!("mutation({args}) {{ {mutation} {{ {OPERATION_FIELDS} }} }}");
        let name = mutation.split('(').next().unwrap_or(mutation);
        self.field(&q, vars, name).await
    }

    /// `vote`: `approve` | `reject` | `abstain`.
    pub async fn vote(&self, op: &str, device: &str, vote: &str) -> Result<Operation, ApiError> {
        self.act(
            "vote(operationId: $o, deviceId: $d, vote: $v)",
            "$o: ID!, $d: ID!, $v: String!",
            json!({"o": op, "d": device, "v": vote}),
        )
        .await
    }

    /// `startOperation`.
    pub async fn start_operation(&self, op: &str, device: &str) -> Result<Operation, ApiError> {
        self.act(
            "startOperation(operationId: $o, deviceId: $d)",
            "$o: ID!, $d: ID!",
            json!({"o": op, "d": device}),
        )
        .await
    }

    /// `submitKeygenResult`.
    pub async fn submit_keygen_result(
        &self,
        op: &str,
        device: &str,
        public_key: &str,
        chain_code: Option<&str>,
        key_set_hash: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitKeygenResult(operationId: $o, deviceId: $d, publicKey: $p, chainCode: $c, keySetHash: $h)",
            "$o: ID!, $d: ID!, $p: String!, $c: String, $h: String!",
            json!({"o": op, "d": device, "p": public_key, "c": chain_code, "h": key_set_hash}),
        )
        .await
    }

    /// `submitReshareResult`.
    pub async fn submit_reshare_result(
        &self,
        op: &str,
        device: &str,
        public_key: &str,
        key_set_hash: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitReshareResult(operationId: $o, deviceId: $d, publicKey: $p, keySetHash: $h)",
            "$o: ID!, $d: ID!, $p: String!, $h: String!",
            json!({"o": op, "d": device, "p": public_key, "h": key_set_hash}),
        )
        .await
    }

    /// `submitSignature`.
    pub async fn submit_signature(
        &self,
        op: &str,
        device: &str,
        signature: &str,
        recovery_id: Option<u8>,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitSignature(operationId: $o, deviceId: $d, signature: $s, recoveryId: $r)",
            "$o: ID!, $d: ID!, $s: String!, $r: Int",
            json!({"o": op, "d": device, "s": signature, "r": recovery_id}),
        )
        .await
    }

    /// Every vault of the organisation.
    pub async fn vaults(&self) -> Result<Vec<Vault>, ApiError> {
        self.field(&format!("{{ vaults {{ {VAULT_FIELDS} }} }}"), json!({}), "vaults")
            .await
    }

    /// Operations of a vault of one kind, newest first (at most 1000).
    pub async fn operations_of(&self, vault: &str, kind: &str) -> Result<Vec<Operation>, ApiError> {
        let q = format!("query($f: OperationFilter) {{ operations(filter: $f) {{ {OPERATION_FIELDS} }} }}");
        self.field(
            &q,
            json!({"f": {"vaultId": vault, "kind": kind, "limit": 1000}}),
            "operations",
        )
        .await
    }

    /// `requestPresignatures`.
    pub async fn request_presignatures(
        &self,
        vault: &str,
        committee: &[String],
        count: u32,
    ) -> Result<Vec<Operation>, ApiError> {
        let q = format!(
            "mutation($v: ID!, $c: [ID!]!, $n: Int!) {{ requestPresignatures(vaultId: $v, committee: $c, count: $n) {{ {OPERATION_FIELDS} }} }}"
        );
        self.field(
            &q,
            json!({"v": vault, "c": committee, "n": count}),
            "requestPresignatures",
        )
        .await
    }

    /// `submitPresignResult`.
    pub async fn submit_presign_result(
        &self,
        op: &str,
        device: &str,
        fingerprint: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitPresignResult(operationId: $o, deviceId: $d, fingerprint: $f)",
            "$o: ID!, $d: ID!, $f: String!",
            json!({"o": op, "d": device, "f": fingerprint}),
        )
        .await
    }

    /// `reportFailure`.
    pub async fn report_failure(
        &self,
        op: &str,
        device: &str,
        reason: &str,
        culprits: &[String],
    ) -> Result<Operation, ApiError> {
        self.act(
            "reportFailure(operationId: $o, deviceId: $d, reason: $r, culpritDeviceIds: $c)",
            "$o: ID!, $d: ID!, $r: String!, $c: [ID!]",
            json!({"o": op, "d": device, "r": reason, "c": culprits}),
        )
        .await
    }
}
