//! The coordinator's queries and mutations, as a device (and the operator CLI) calls them.

use serde_json::{json, Value};
use vsigner_records::{Statement, StatementKind};
use vsigner_transport::DeviceIdentity;

use super::{ApiError, CoordinatorClient, Device, HumanAnswer, Operation, Vault};

const DEVICE_FIELDS: &str =
    "id organisationId name kind identitySigningKey identityEncryptionKey status record";
const VAULT_FIELDS: &str = "id organisationId name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress";
const OPERATION_FIELDS: &str = "id organisationId kind state vaultId curve nonce createdAt updatedAt expiresAt \
    vault { id organisationId name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress } \
    committee { deviceId name identitySigningKey identityEncryptionKey record index oldIndex newIndex } \
    submittedDeviceIds \
    keygen { threshold signers { deviceId weight index } } \
    reshare { oldThreshold oldSigners { deviceId weight index } newThreshold newSigners { deviceId weight index } oldKeyGeneration newKeyGeneration } \
    sign { payloadKind payload signingDigest derivationPath taproot { merkleRoot } chainId keyGeneration presignatureId } \
    presign { keyGeneration consumedBy discardedBy } \
    result { publicKey chainCode keyGeneration keySetHash signature recoveryId submittedBy rawTransaction txHash broadcastError } \
    failure { reason culpritDeviceIds reportedBy } rejectionReason startedBy";

/// A device statement as the coordinator logged it (unverified: check the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedStatement {
    /// The device that made it.
    pub device_id: String,
    /// Its kind ([`StatementKind::as_str`]).
    pub kind: String,
    /// Its content fields.
    pub content: Vec<String>,
    /// The device's signature (hex).
    pub signature: String,
}

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

    /// Operation `id` as soon as it is final or no longer in `state`, or as it is after
    /// `seconds` (1 to 60, under [`super::REQUEST_TIMEOUT`]): `waitForOperation`.
    pub async fn wait_for_operation(
        &self,
        id: &str,
        state: &str,
        seconds: u64,
    ) -> Result<Operation, ApiError> {
        let q = format!(
            "query($id: ID!, $s: Int!, $st: String) {{ waitForOperation(id: $id, seconds: $s, state: $st) {{ {OPERATION_FIELDS} }} }}"
        );
        self.field(
            &q,
            json!({"id": id, "s": seconds, "st": state}),
            "waitForOperation",
        )
        .await
    }

    /// `postHumanApprovalRequest`: shows people what a human-approved device asks.
    pub async fn post_human_approval_request(
        &self,
        op: &str,
        device: &str,
        request: &str,
        passkeys: &[String],
    ) -> Result<bool, ApiError> {
        let q = "mutation($o: ID!, $d: ID!, $r: String!, $p: [String!]!) { postHumanApprovalRequest(operationId: $o, deviceId: $d, request: $r, credentialIds: $p) }";
        self.field(
            q,
            json!({"o": op, "d": device, "r": request, "p": passkeys}),
            "postHumanApprovalRequest",
        )
        .await
    }

    /// `humanAnswers`: people's answers to what a device asked about an operation.
    pub async fn human_answers(&self, op: &str, device: &str) -> Result<Vec<HumanAnswer>, ApiError> {
        let q =
            "query($o: ID!, $d: ID!) { humanAnswers(operationId: $o, deviceId: $d) { verdict assertion } }";
        self.field(q, json!({"o": op, "d": device}), "humanAnswers").await
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

    /// `publishDeviceRecord`: the device's own signed record of its keys (hex).
    pub async fn publish_device_record(&self, device: &str, record_hex: &str) -> Result<Device, ApiError> {
        let q = format!(
            "mutation($d: ID!, $r: String!) {{ publishDeviceRecord(deviceId: $d, record: $r) {{ {DEVICE_FIELDS} }} }}"
        );
        self.field(&q, json!({"d": device, "r": record_hex}), "publishDeviceRecord")
            .await
    }

    /// A device action, signed by the device over its statement (`kind`, `content`): the
    /// mutation `call` with arguments `args` (`$o` the operation, `$d` the device) and
    /// `vars`, plus `deviceSignature`.
    async fn act(
        &self,
        device: &ActingDevice<'_>,
        call: &str,
        args: &str,
        mut vars: Value,
        kind: StatementKind,
        content: Vec<&str>,
    ) -> Result<Operation, ApiError> {
        let op = vars["o"].as_str().unwrap_or_default().to_owned();
        vars["d"] = json!(device.id());
        vars["sig"] = json!(device.sign(&op, kind, content));
        let name = call.split('(').next().unwrap_or(call);
        let call = call.replacen("deviceId: $d", "deviceId: $d, deviceSignature: $sig", 1);
        let q = format!("mutation({args}, $sig: String) {{ {call} {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, vars, name).await
    }

    /// `vote`: `approve` | `reject` | `abstain`.
    pub async fn vote(&self, op: &str, device: &ActingDevice<'_>, vote: &str) -> Result<Operation, ApiError> {
        self.act(
            device,
            "vote(operationId: $o, deviceId: $d, vote: $v)",
            "$o: ID!, $d: ID!, $v: String!",
            json!({"o": op, "v": vote}),
            StatementKind::Vote,
            vec![vote],
        )
        .await
    }

    /// `startOperation`.
    pub async fn start_operation(&self, op: &str, device: &ActingDevice<'_>) -> Result<Operation, ApiError> {
        self.act(
            device,
            "startOperation(operationId: $o, deviceId: $d)",
            "$o: ID!, $d: ID!",
            json!({"o": op}),
            StatementKind::Start,
            vec![],
        )
        .await
    }

    /// `submitKeygenResult`.
    pub async fn submit_keygen_result(
        &self,
        op: &str,
        device: &ActingDevice<'_>,
        public_key: &str,
        chain_code: Option<&str>,
        key_set_hash: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            device,
            "submitKeygenResult(operationId: $o, deviceId: $d, publicKey: $p, chainCode: $c, keySetHash: $h)",
            "$o: ID!, $d: ID!, $p: String!, $c: String, $h: String!",
            json!({"o": op, "p": public_key, "c": chain_code, "h": key_set_hash}),
            StatementKind::KeygenResult,
            vec![public_key, chain_code.unwrap_or_default(), key_set_hash],
        )
        .await
    }

    /// `submitReshareResult`.
    pub async fn submit_reshare_result(
        &self,
        op: &str,
        device: &ActingDevice<'_>,
        public_key: &str,
        key_set_hash: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            device,
            "submitReshareResult(operationId: $o, deviceId: $d, publicKey: $p, keySetHash: $h)",
            "$o: ID!, $d: ID!, $p: String!, $h: String!",
            json!({"o": op, "p": public_key, "h": key_set_hash}),
            StatementKind::ReshareResult,
            vec![public_key, key_set_hash],
        )
        .await
    }

    /// `submitSignature`.
    pub async fn submit_signature(
        &self,
        op: &str,
        device: &ActingDevice<'_>,
        signature: &str,
        recovery_id: Option<u8>,
    ) -> Result<Operation, ApiError> {
        let recovery = recovery_id.map(|r| r.to_string()).unwrap_or_default();
        self.act(
            device,
            "submitSignature(operationId: $o, deviceId: $d, signature: $s, recoveryId: $r)",
            "$o: ID!, $d: ID!, $s: String!, $r: Int",
            json!({"o": op, "s": signature, "r": recovery_id}),
            StatementKind::Signature,
            vec![signature, &recovery],
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
        device: &ActingDevice<'_>,
        fingerprint: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            device,
            "submitPresignResult(operationId: $o, deviceId: $d, fingerprint: $f)",
            "$o: ID!, $d: ID!, $f: String!",
            json!({"o": op, "f": fingerprint}),
            StatementKind::PresignResult,
            vec![fingerprint],
        )
        .await
    }

    /// `discardPresignatures`: this device holds none of its unconsumed presignatures
    /// any more (they lived in the memory of a process that ended). Returns how many the
    /// coordinator marked discarded.
    pub async fn discard_presignatures(
        &self,
        device: &ActingDevice<'_>,
        reason: &str,
    ) -> Result<u32, ApiError> {
        // A statement about the device itself: its operation id is the device id.
        let signature = device.sign(device.id(), StatementKind::DiscardPresignatures, vec![reason]);
        let q = "mutation($d: ID!, $r: String!, $sig: String) { discardPresignatures(deviceId: $d, reason: $r, deviceSignature: $sig) }";
        self.field(
            q,
            json!({"d": device.id(), "r": reason, "sig": signature}),
            "discardPresignatures",
        )
        .await
    }

    /// The device statements the coordinator logged about an operation (votes, results,
    /// failures), each with the device's signature: what a device checks a reshare's
    /// receipts against.
    pub async fn device_statements(&self, op: &str) -> Result<Vec<LoggedStatement>, ApiError> {
        let entries: Vec<Value> = self
            .field(
                "query($e: ID) { auditLog(entityId: $e) { actor event detail } }",
                json!({"e": op}),
                "auditLog",
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter(|e| e["event"] == "device_statement")
            .filter_map(|e| {
                let detail: Value = serde_json::from_str(e["detail"].as_str()?).ok()?;
                Some(LoggedStatement {
                    device_id: e["actor"].as_str()?.to_owned(),
                    kind: detail["kind"].as_str()?.to_owned(),
                    content: detail["content"]
                        .as_array()?
                        .iter()
                        .map(|c| c.as_str().map(str::to_owned))
                        .collect::<Option<_>>()?,
                    signature: detail["signature"].as_str()?.to_owned(),
                })
            })
            .collect())
    }

    /// `reportFailure`.
    pub async fn report_failure(
        &self,
        op: &str,
        device: &ActingDevice<'_>,
        reason: &str,
        culprits: &[String],
    ) -> Result<Operation, ApiError> {
        let mut content = vec![reason];
        content.extend(culprits.iter().map(String::as_str));
        self.act(
            device,
            "reportFailure(operationId: $o, deviceId: $d, reason: $r, culpritDeviceIds: $c)",
            "$o: ID!, $d: ID!, $r: String!, $c: [ID!]",
            json!({"o": op, "r": reason, "c": culprits}),
            StatementKind::Failure,
            content,
        )
        .await
    }
}

/// A device acting at the coordinator: its organisation and identity, whose key signs each
/// of its actions ([`Statement`]), so that the coordinator (and any auditor of its log) can
/// tell it from any other client of the same API credentials.
#[derive(Clone, Copy)]
pub struct ActingDevice<'a> {
    /// The organisation.
    pub organisation_id: &'a str,
    /// The device's identity (id and keys).
    pub identity: &'a DeviceIdentity,
}

impl ActingDevice<'_> {
    /// The device id.
    pub fn id(&self) -> &str {
        self.identity.device_id().as_str()
    }

    /// The device's signature (hex) over its statement of an action on `op`.
    pub fn sign(&self, op: &str, kind: StatementKind, content: Vec<&str>) -> String {
        Statement {
            organisation_id: self.organisation_id,
            operation_id: op,
            device_id: self.id(),
            kind,
            content,
        }
        .sign(self.identity.signing_key())
    }
}
