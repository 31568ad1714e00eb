//! Test support: databases (SQLite temp file, PostgreSQL fresh database), a running
//! coordinator, a GraphQL client, and devices with identity keys.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use serde_json::{json, Value};
use vsigner_coordinator::{Clock, InitArgs, InitOutput, RunningCoordinator, ServeArgs};

/// A test database; dropped (PostgreSQL) or deleted (SQLite) at the end.
pub struct Db {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("coordinator.db").display()
        );
        Db {
            url,
            backend: "sqlite",
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    /// A fresh database on `VSIGNER_TEST_PG_URL`, or None (printing why) when unset.
    pub async fn postgres() -> Option<Db> {
        let Ok(admin) = std::env::var("VSIGNER_TEST_PG_URL") else {
            eprintln!("skipping the PostgreSQL variant: VSIGNER_TEST_PG_URL is not set");
            return None;
        };
        let name = format!("vsigner_test_{}", hex::encode(rand::random::<[u8; 6]>()));
        sqlx::any::install_default_drivers();
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let base = match admin.rfind('/') {
            Some(i) if admin[..i].ends_with(|ch: char| ch != '/') => admin[..i].to_owned(),
            _ => admin.trim_end_matches('/').to_owned(),
        };
        let url = format!("{base}/{name}");
        Some(Db {
            url,
            backend: "postgres",
            _dir: None,
            pg_drop: Some((admin, name)),
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_drop.take() {
            // Drop the database from a separate thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn serve_args(db: &Db) -> ServeArgs {
    ServeArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database: db.url.clone(),
        ..ServeArgs::default()
    }
}

/// A coordinator running in-process on 127.0.0.1:0.
pub struct Coord {
    pub running: RunningCoordinator,
    pub base: String,
    pub clock: Clock,
    pub http: reqwest::Client,
}

impl Coord {
    pub async fn start(db: &Db) -> Coord {
        Self::start_with(serve_args(db)).await
    }

    pub async fn start_with(args: ServeArgs) -> Coord {
        let clock = Clock::default();
        let running = vsigner_coordinator::start(args, clock.clone()).await.unwrap();
        let base = format!("http://{}", running.addr());
        Coord {
            running,
            base,
            clock,
            http: http_client(),
        }
    }

    /// An access token for a client.
    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "token request failed");
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    pub fn client(&self, token: &str) -> Api {
        Api {
            http: self.http.clone(),
            url: format!("{}/graphql", self.base),
            token: Some(token.to_owned()),
        }
    }

    /// Operator and signer clients of an organisation.
    pub async fn org(&self, init: &InitOutput) -> (Api, Api) {
        let op = self
            .token(
                init.operator_client_id.as_str(),
                init.operator_client_secret.expose(),
            )
            .await;
        let sg = self
            .token(init.signer_client_id.as_str(), init.signer_client_secret.expose())
            .await;
        (self.client(&op), self.client(&sg))
    }
}

pub async fn init_org(db: &Db, name: &str) -> InitOutput {
    vsigner_coordinator::init(&InitArgs {
        database: db.url.clone(),
        org: name.to_owned(),
    })
    .await
    .unwrap()
}

/// A GraphQL client.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

/// The identity keys of the devices these tests registered (device id → organisation and
/// Ed25519 key): every device action a test sends is signed as the device would sign it.
static DEVICE_KEYS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (String, ed25519_dalek::SigningKey)>>,
> = std::sync::LazyLock::new(Default::default);

/// The key of a device registered by [`register_device`].
pub fn device_key(device: &str) -> (String, ed25519_dalek::SigningKey) {
    DEVICE_KEYS.lock().unwrap()[device].clone()
}

/// The device actions (mutation, statement kind, the variables of its content in order; a
/// `*` marks a list).
const ACTIONS: &[(&str, vsigner_records::StatementKind, &[&str])] = &[
    ("vote", vsigner_records::StatementKind::Vote, &["v"]),
    ("startOperation", vsigner_records::StatementKind::Start, &[]),
    (
        "reportFailure",
        vsigner_records::StatementKind::Failure,
        &["r", "*c"],
    ),
    (
        "submitKeygenResult",
        vsigner_records::StatementKind::KeygenResult,
        &["pk", "cc", "h"],
    ),
    (
        "submitReshareResult",
        vsigner_records::StatementKind::ReshareResult,
        &["pk", "h"],
    ),
    (
        "submitSignature",
        vsigner_records::StatementKind::Signature,
        &["s", "r"],
    ),
    (
        "submitPresignResult",
        vsigner_records::StatementKind::PresignResult,
        &["f"],
    ),
];

/// `query` and `vars` with the device's signature added, when `query` is a device action
/// (`$o` the operation, `$d` the device) of a device registered here and not signed yet.
pub fn signed_as_device(query: &str, vars: &Value) -> Option<(String, Value)> {
    if query.contains("$sig") {
        return None;
    }
    let (name, kind, fields) = ACTIONS
        .iter()
        .find(|(name, _, _)| query.contains(&format!("{name}(")))?;
    let device = vars["d"].as_str()?;
    let (org, key) = DEVICE_KEYS.lock().unwrap().get(device)?.clone();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut content: Vec<String> = Vec::new();
    for f in *fields {
        match f.strip_prefix('*') {
            Some(list) => content.extend(vars[list].as_array().into_iter().flatten().map(text)),
            None => content.push(text(&vars[*f])),
        }
    }
    let statement = vsigner_records::Statement {
        organisation_id: &org,
        operation_id: vars["o"].as_str()?,
        device_id: device,
        kind: *kind,
        content: content.iter().map(String::as_str).collect(),
    };
    let mut vars = vars.clone();
    vars["sig"] = json!(statement.sign(&key));
    let query = query
        .replacen("mutation(", "mutation($sig: String, ", 1)
        .replacen(
            &format!("{name}(operationId: $o, deviceId: $d"),
            &format!("{name}(operationId: $o, deviceId: $d, deviceSignature: $sig"),
            1,
        );
    Some((query, vars))
}

impl Api {
    /// Sends a request; a device action of a device registered here is signed by it.
    pub async fn raw(&self, query: &str, vars: Value) -> Value {
        match signed_as_device(query, &vars) {
            Some((query, vars)) => self.raw_as_is(&query, vars).await,
            None => self.raw_as_is(query, vars).await,
        }
    }

    /// Sends a request exactly as given (no signature added).
    pub async fn raw_as_is(&self, query: &str, vars: Value) -> Value {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({"query": query, "variables": vars}));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Data of a successful request (panics with the errors otherwise).
    pub async fn ok(&self, query: &str, vars: Value) -> Value {
        let v = self.raw(query, vars).await;
        assert!(
            v.get("errors").is_none_or(|e| e.is_null()),
            "unexpected errors: {v}\nquery: {query}"
        );
        v["data"].clone()
    }

    /// The `extensions.code` of a failing request.
    pub async fn err(&self, query: &str, vars: Value) -> String {
        let v = self.raw(query, vars).await;
        let code = v["errors"][0]["extensions"]["code"].as_str();
        assert!(code.is_some(), "expected an error, got {v}\nquery: {query}");
        code.unwrap().to_owned()
    }
}

pub const OP_FIELDS: &str = "id kind state vaultId curve nonce expiresAt approvedWeight requiredWeight
  voters { deviceId weight oldIndex newIndex }
  votes { deviceId vote weight }
  committee { deviceId name identitySigningKey identityEncryptionKey index oldIndex newIndex }
  submittedDeviceIds
  keygen { threshold signers { deviceId weight index } }
  reshare { oldThreshold newThreshold oldKeyGeneration oldSigners { deviceId index } newSigners { deviceId index } }
  sign { payloadKind payload signingDigest derivationPath chainId keyGeneration }
  result { publicKey chainCode keyGeneration keySetHash signature recoveryId submittedBy rawTransaction txHash broadcastError }
  failure { reason culpritDeviceIds reportedBy }
  rejectionReason startedBy
  vault { id curve threshold publicKey chainCode keyGeneration keySetHash status ethereumAddress signers { deviceId index } }";

pub fn q_op() -> String {
    format!("query($id: ID!) {{ operation(id: $id) {{ {OP_FIELDS} }} }}")
}

/// Registers a device with fresh identity keys; returns its id.
/// Registers a device with fresh identity keys; returns its id. Its key signs its actions
/// ([`Api::raw`]).
pub async fn register_device(signer: &Api, name: &str) -> String {
    let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let ek: [u8; 32] = rand::random();
    let d = signer
        .ok(
            "mutation($i: RegisterDeviceInput!) { registerDevice(input: $i) { id organisationId kind status identitySigningKey } }",
            json!({"i": {"name": name, "identitySigningKey": hex::encode(sk.verifying_key().to_bytes()),
                         "identityEncryptionKey": hex::encode(ek)}}),
        )
        .await;
    let id = d["registerDevice"]["id"].as_str().unwrap().to_owned();
    let org = d["registerDevice"]["organisationId"].as_str().unwrap().to_owned();
    DEVICE_KEYS.lock().unwrap().insert(id.clone(), (org, sk));
    id
}

pub async fn create_vault(operator: &Api, curve: &str, threshold: i64, devices: &[String]) -> Value {
    let signers: Vec<Value> = devices.iter().map(|d| json!({"deviceId": d})).collect();
    let q = format!("mutation($i: CreateVaultInput!) {{ createVault(input: $i) {{ {OP_FIELDS} }} }}");
    operator
        .ok(
            &q,
            json!({"i": {"name": "vault", "curve": curve, "threshold": threshold, "signers": signers}}),
        )
        .await["createVault"]
        .clone()
}

pub async fn vote(signer: &Api, op: &str, device: &str, choice: &str) -> Value {
    let q = format!("mutation($o: ID!, $d: ID!, $v: String!) {{ vote(operationId: $o, deviceId: $d, vote: $v) {{ {OP_FIELDS} }} }}");
    signer.ok(&q, json!({"o": op, "d": device, "v": choice})).await["vote"].clone()
}

pub async fn vote_err(signer: &Api, op: &str, device: &str, choice: &str) -> String {
    signer
        .err(
            "mutation($o: ID!, $d: ID!, $v: String!) { vote(operationId: $o, deviceId: $d, vote: $v) { id } }",
            json!({"o": op, "d": device, "v": choice}),
        )
        .await
}

pub const SUBMIT_KEYGEN: &str = "mutation($o: ID!, $d: ID!, $pk: String!, $cc: String, $h: String!) {
  submitKeygenResult(operationId: $o, deviceId: $d, publicKey: $pk, chainCode: $cc, keySetHash: $h) { id state result { publicKey chainCode keySetHash } failure { reason culpritDeviceIds } } }";

/// A key-set hash the test devices agree on (its value is not checked by the coordinator).
pub const KSH: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

pub const SUBMIT_RESHARE: &str = "mutation($o: ID!, $d: ID!, $pk: String!, $h: String!) {
  submitReshareResult(operationId: $o, deviceId: $d, publicKey: $pk, keySetHash: $h) { state result { keyGeneration publicKey keySetHash } } }";

pub const SUBMIT_SIG: &str = "mutation($o: ID!, $d: ID!, $s: String!, $r: Int) {
  submitSignature(operationId: $o, deviceId: $d, signature: $s, recoveryId: $r) {
    id state result { signature recoveryId submittedBy rawTransaction txHash broadcastError } } }";

pub const REQUEST_SIG: &str = "mutation($i: RequestSignatureInput!, $k: String) {
  requestSignature(input: $i, idempotencyKey: $k) { id state sign { payloadKind signingDigest derivationPath chainId } voters { deviceId } } }";

/// A secp256k1 "vault key" played by the test.
pub struct EcKey {
    pub sk: k256::ecdsa::SigningKey,
    pub chain_code: [u8; 32],
}

impl EcKey {
    pub fn random() -> EcKey {
        EcKey {
            sk: k256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            chain_code: rand::random(),
        }
    }
    pub fn public_hex(&self) -> String {
        hex::encode(self.sk.verifying_key().to_encoded_point(true).as_bytes())
    }
    /// (r‖s hex, recovery id), low-s.
    pub fn sign_prehash(&self, digest: &[u8]) -> (String, i64) {
        sign_prehash_with(&self.sk, digest)
    }
    /// BIP-32 CKDpriv (non-hardened), computed independently of the coordinator.
    pub fn derive(&self, path: &[u32]) -> k256::ecdsa::SigningKey {
        use hmac::{Hmac, Mac};
        use k256::elliptic_curve::ops::Reduce;
        let mut k = *self.sk.as_nonzero_scalar().as_ref();
        let mut cc = self.chain_code;
        for i in path {
            let pk = k256::ProjectivePoint::GENERATOR * k;
            let pk = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk.to_affine(), true);
            let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(&cc).unwrap();
            mac.update(pk.as_bytes());
            mac.update(&i.to_be_bytes());
            let out = mac.finalize().into_bytes();
            let mut fb = k256::FieldBytes::default();
            fb.copy_from_slice(&out[..32]);
            let il = <k256::Scalar as Reduce<k256::U256>>::reduce_bytes(&fb);
            k += il;
            cc.copy_from_slice(&out[32..]);
        }
        k256::ecdsa::SigningKey::from_bytes(&k.to_bytes()).unwrap()
    }
}

pub fn sign_prehash_with(sk: &k256::ecdsa::SigningKey, digest: &[u8]) -> (String, i64) {
    let (sig, rid) = sk.sign_prehash_recoverable(digest).unwrap();
    // k256 already normalises to low-s and adjusts the recovery id accordingly.
    assert!(sig.normalize_s().is_none());
    (hex::encode(sig.to_bytes()), i64::from(rid.to_byte()))
}

/// Runs a secp256k1 2-of-3 (or t-of-n) keygen through GraphQL with `key`; returns (vault id, devices).
pub async fn active_vault(
    operator: &Api,
    signer: &Api,
    curve: &str,
    t: i64,
    n: usize,
    key_hex: &str,
    cc: Option<&str>,
) -> (String, Vec<String>) {
    let mut devices = Vec::new();
    for i in 0..n {
        devices.push(register_device(signer, &format!("device-{i}")).await);
    }
    let op = create_vault(operator, curve, t, &devices).await;
    let op_id = op["id"].as_str().unwrap().to_owned();
    let vault_id = op["vaultId"].as_str().unwrap().to_owned();
    for d in &devices {
        vote(signer, &op_id, d, "approve").await;
    }
    for d in &devices {
        signer
            .ok(
                SUBMIT_KEYGEN,
                json!({"o": op_id, "d": d, "pk": key_hex, "cc": cc, "h": KSH}),
            )
            .await;
    }
    let v = operator
        .ok(
            "query($id: ID!) { vault(id: $id) { status } }",
            json!({"id": vault_id}),
        )
        .await;
    assert_eq!(v["vault"]["status"], "Active");
    (vault_id, devices)
}

/// Declares each scenario once per backend: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Db::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::common::Db::postgres().await else { return };
                    super::$name(db).await
                }
            )*
        }
    };
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
