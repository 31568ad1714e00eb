//! The whole system as separate processes of the built `vsigner` binary: embedded broker,
//! coordinator (SQLite), signer daemons; plus a real approval webhook (the example Python
//! server) and an OTLP receiver in the test process. Every process's output is captured so
//! that tests can search it for secrets.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vsigner_signer::coordinator_api::{CoordinatorClient, Operation};
use zeroize::Zeroizing;

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vsigner")
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Captured output of one process (stdout and stderr, in arrival order per stream).
#[derive(Clone, Default)]
pub(crate) struct Output(Arc<Mutex<String>>);

impl Output {
    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn capture(&self, stream: impl Read + Send + 'static, name: String, echo: bool) {
        let out = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[{name}] {line}");
                }
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
}

/// A child process that is killed when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) output: Output,
}

impl Proc {
    pub(crate) fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Output::default();
        let echo = std::env::var_os("VSIGNER_TEST_ECHO").is_some();
        output.capture(child.stdout.take().unwrap(), name.to_owned(), echo);
        output.capture(child.stderr.take().unwrap(), name.to_owned(), echo);
        Proc {
            name: name.to_owned(),
            child,
            output,
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (within `within`).
    pub(crate) fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "{} did not stop within {within:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Credentials printed by `vsigner coordinator init`.
pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) operator: (String, String),
    pub(crate) signer: (String, String),
}

pub(crate) fn coordinator_init(db: &str) -> Org {
    let out = Command::new(bin())
        .args(["coordinator", "init", "--database", db, "--org", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |label: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label} in {text}"))
    };
    Org {
        id: field("organisation:"),
        operator: (field("operator client id:"), field("operator client secret:")),
        signer: (field("signer client id:"), field("signer client secret:")),
    }
}

/// The embedded broker on a free port: its process and `mqtt://` URL.
pub(crate) fn start_broker() -> (Proc, String) {
    let port = free_port();
    let broker = Proc::spawn(
        "broker",
        Command::new(bin()).args(["broker", "--listen", &format!("127.0.0.1:{port}")]),
    );
    wait_for_port(port, "broker");
    (broker, format!("mqtt://127.0.0.1:{port}"))
}

/// A coordinator on a new SQLite database in `dir`, notifying through the broker at `mqtt`
/// (`extra`: more arguments): its process, URL and organisation.
pub(crate) fn start_coordinator(dir: &Path, mqtt: &str, extra: &[&str]) -> (Proc, String, Org) {
    let db = format!("sqlite://{}?mode=rwc", dir.join("coordinator.db").display());
    let org = coordinator_init(&db);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let coordinator = Proc::spawn(
        "coordinator",
        Command::new(bin())
            .args([
                "coordinator",
                "--listen",
                &listen,
                "--database",
                &db,
                "--mqtt",
                mqtt,
            ])
            .args(extra),
    );
    wait_for_port(port, "coordinator");
    (coordinator, format!("http://{listen}"), org)
}

/// The example approval webhook (Python, signed replies).
pub(crate) struct Webhook {
    /// Killed when dropped.
    _proc: Proc,
    pub(crate) url: String,
    pub(crate) public_key_hex: String,
}

pub(crate) fn start_webhook() -> Webhook {
    start_webhook_on(0, None)
}

/// The example webhook approving transactions of at most `max_wei` (a stricter policy
/// than [`start_webhook`]'s 1 ETH).
pub(crate) fn start_webhook_with_limit(max_wei: u128) -> Webhook {
    webhook(&["--max-wei", &max_wei.to_string()], None)
}

/// The example webhook on `port` (0: any free port), signing with `reply_key` (a PEM file;
/// `None`: a fresh key).
pub(crate) fn start_webhook_on(port: u16, reply_key: Option<&Path>) -> Webhook {
    webhook(&["--port", &port.to_string()], reply_key)
}

fn webhook(args: &[&str], reply_key: Option<&Path>) -> Webhook {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("examples/approval-webhook/server.py"))
        .args(["--host", "127.0.0.1"])
        .args(args);
    if let Some(key) = reply_key {
        cmd.arg("--reply-key").arg(key);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let info: Value = serde_json::from_str(&first).unwrap_or_else(|_| panic!("webhook said {first:?}"));
    let output = Output::default();
    output.capture(stdout, "webhook".into(), false);
    output.capture(child.stderr.take().unwrap(), "webhook".into(), false);
    Webhook {
        url: format!("http://127.0.0.1:{}", info["port"]),
        public_key_hex: info["approvalHTTPPublicKeyHex"].as_str().unwrap().to_owned(),
        _proc: Proc {
            name: "webhook".into(),
            child,
            output,
        },
    }
}

/// One signer daemon's settings and process.
pub(crate) struct Signer {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) port: u16,
    pub(crate) prometheus_port: u16,
    pub(crate) proc: Option<Proc>,
    /// Output of earlier incarnations (before a kill).
    pub(crate) earlier_output: Vec<Output>,
}

pub(crate) const API_TOKEN: &str = "test-api-token-0123456789";
pub(crate) const PASSPHRASE: &str = "keystore passphrase for the tests";

impl Signer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn configure(
        name: &str,
        root: &Path,
        org: &Org,
        coordinator_url: &str,
        broker_url: &str,
        webhook: &Webhook,
        devices: &[&str],
        otlp: Option<&str>,
    ) -> Signer {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Ports are chosen by the daemon (0) and read from its log: a port picked here could
        // be taken by another process's outgoing connection before the daemon binds it.
        let (port, prometheus_port) = (0, 0);
        let mut cfg = json!({
            "Port": 0,
            "PrometheusPort": 0,
            "OrgId": org.id,
            "AuthClientId": org.signer.0,
            "AuthClientSecret": org.signer.1,
            "APIBaseURL": coordinator_url,
            "MQTTEndpoint": broker_url,
            "InitialDevices": devices,
            "ApprovalMode": "API",
            "ExternalTransactionApprovalURL": format!("{}/approve", webhook.url),
            "ExternalReshareApprovalURL": format!("{}/approve", webhook.url),
            "ApprovalHTTPPublicKeyHex": webhook.public_key_hex,
            "STORAGE_BUCKET_URL": dir.join("keystore").to_str().unwrap(),
            "KeystoreSealing": "passphrase",
            "KeystorePassphrase": PASSPHRASE,
            "SignerAPIToken": API_TOKEN,
            "PollIntervalSeconds": 1,
            "PrimePoolTarget": 0,
            // The tests import the public test primes.
            "AllowPublicTestPrimes": true,
            "TraceSpanExporter": "none",
        });
        if devices.len() > 1 {
            // Two local members of one committee share one permit: with a single permit
            // they must not wait for each other.
            cfg["MaxConcurrentOperations"] = json!(1);
        }
        if otlp.is_some() {
            // This daemon (device b) keeps presignatures for the vaults where b is signer 0.
            cfg["PresignaturePoolTarget"] = json!(2);
        }
        if let Some(endpoint) = otlp {
            cfg["TraceSpanExporter"] = json!("OTLP-NO-TLS");
            cfg["OTELExporterOTLPEndpoint"] = json!(endpoint);
        }
        let config = dir.join("signer.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        Signer {
            name: name.to_owned(),
            dir,
            config,
            port,
            prometheus_port,
            proc: None,
            earlier_output: Vec::new(),
        }
    }

    /// Changes the configuration file (takes effect at the next start).
    /// Signers `s1`, `s2`, … in `root`, one device each (`devices[k]` in `s{k+1}`), each with
    /// the prime sets `primes[k]` = (skip, count) of the committed test pool imported; not
    /// started.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn one_device_each(
        root: &Path,
        org: &Org,
        coordinator_url: &str,
        broker_url: &str,
        webhook: &Webhook,
        devices: &[&str],
        primes: &[(usize, usize)],
    ) -> Vec<Signer> {
        devices
            .iter()
            .zip(primes)
            .enumerate()
            .map(|(k, (name, (skip, count)))| {
                let s = Signer::configure(
                    &format!("s{}", k + 1),
                    root,
                    org,
                    coordinator_url,
                    broker_url,
                    webhook,
                    &[name],
                    None,
                );
                if *count > 0 {
                    s.import_primes(*skip, *count);
                }
                s
            })
            .collect()
    }

    pub(crate) fn tweak(&self, tweak: impl FnOnce(&mut Value)) {
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&self.config).unwrap()).unwrap();
        tweak(&mut cfg);
        std::fs::write(&self.config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }

    /// `vsigner primes import` of `count` sets after `skip` from the committed test pool.
    pub(crate) fn import_primes(&self, skip: usize, count: usize) {
        let pool = repo_root().join("test-data/primes/public-test-pool.json");
        let out = Command::new(bin())
            .args(["primes", "import", "--config"])
            .arg(&self.config)
            .arg("--from")
            .arg(pool)
            .args(["--skip", &skip.to_string(), "--count", &count.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    pub(crate) fn start(&mut self) {
        if let Some(p) = self.proc.take() {
            self.earlier_output.push(p.output.clone());
        }
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--config"]).arg(&self.config);
        cmd.env("RUST_LOG", "info");
        let proc = Proc::spawn(&self.name, &mut cmd);
        let start = Instant::now();
        let running = loop {
            let text = proc.output.text();
            if let Some(line) = text.lines().find(|l| l.contains("\"vsigner running\"")) {
                break serde_json::from_str::<Value>(line).unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not start:\n{text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let port_of = |field: &str| -> u16 {
            let addr = running["fields"][field].as_str().unwrap();
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        self.port = port_of("api");
        self.prometheus_port = port_of("metrics");
        self.proc = Some(proc);
    }

    pub(crate) fn all_output(&self) -> String {
        let mut s: String = self.earlier_output.iter().map(Output::text).collect();
        if let Some(p) = &self.proc {
            s.push_str(&p.output.text());
        }
        s
    }

    pub(crate) fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap()
    }
}

/// The operator's view of the coordinator.
pub(crate) struct Operator {
    pub(crate) client: CoordinatorClient,
}

impl Operator {
    pub(crate) fn new(url: &str, org: &Org) -> Operator {
        Operator {
            client: CoordinatorClient::new(
                &url.parse().unwrap(),
                &org.operator.0,
                Zeroizing::new(org.operator.1.clone()),
            )
            .unwrap(),
        }
    }

    pub(crate) async fn gql(&self, query: &str, vars: Value) -> Value {
        self.client
            .execute(query, vars)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// `fields` of the vault `id`, as GraphQL gives them.
    pub(crate) async fn vault(&self, id: &str, fields: &str) -> Value {
        self.gql(
            &format!("query($id: ID!) {{ vault(id: $id) {{ {fields} }} }}"),
            json!({"id": id}),
        )
        .await["vault"]
            .clone()
    }

    pub(crate) async fn device_ids(&self) -> Vec<(String, String)> {
        self.client
            .devices()
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.id))
            .collect()
    }

    /// Waits until devices named `names` are registered; returns their ids in that order.
    pub(crate) async fn wait_devices(&self, names: &[&str]) -> Vec<String> {
        let start = Instant::now();
        loop {
            let devices = self.device_ids().await;
            let found: Option<Vec<String>> = names
                .iter()
                .map(|n| {
                    devices
                        .iter()
                        .find(|(name, _)| name == n)
                        .map(|(_, id)| id.clone())
                })
                .collect();
            if let Some(ids) = found {
                return ids;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "devices {names:?} not registered: {devices:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn create_vault(
        &self,
        name: &str,
        curve: &str,
        threshold: u16,
        signers: &[String],
    ) -> String {
        let weighted: Vec<(String, u32)> = signers.iter().map(|d| (d.clone(), 1)).collect();
        self.create_weighted_vault(name, curve, threshold, &weighted)
            .await
    }

    /// A vault of devices with weights (the number of shares each holds).
    pub(crate) async fn create_weighted_vault(
        &self,
        name: &str,
        curve: &str,
        threshold: u16,
        signers: &[(String, u32)],
    ) -> String {
        let signers: Vec<Value> = signers
            .iter()
            .map(|(d, w)| json!({"deviceId": d, "weight": w}))
            .collect();
        let data = self
            .gql(
                "mutation($i: CreateVaultInput!) { createVault(input: $i) { id } }",
                json!({"i": {"name": name, "curve": curve, "threshold": threshold, "signers": signers}}),
            )
            .await;
        data["createVault"]["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn request_signature(&self, vault: &str, input: Value) -> String {
        let mut input = input;
        input["vaultId"] = json!(vault);
        let data = self
            .gql(
                "mutation($i: RequestSignatureInput!) { requestSignature(input: $i) { id } }",
                json!({"i": input}),
            )
            .await;
        data["requestSignature"]["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn request_reshare(&self, vault: &str, threshold: u16, signers: &[String]) -> String {
        let weighted: Vec<(String, u32)> = signers.iter().map(|d| (d.clone(), 1)).collect();
        self.request_weighted_reshare(vault, threshold, &weighted).await
    }

    /// A reshare to devices with (new) weights.
    pub(crate) async fn request_weighted_reshare(
        &self,
        vault: &str,
        threshold: u16,
        signers: &[(String, u32)],
    ) -> String {
        let signers: Vec<Value> = signers
            .iter()
            .map(|(d, w)| json!({"deviceId": d, "weight": w}))
            .collect();
        let data = self
            .gql(
                "mutation($i: RequestReshareInput!) { requestReshare(input: $i) { id } }",
                json!({"i": {"vaultId": vault, "newThreshold": threshold, "newSigners": signers}}),
            )
            .await;
        data["requestReshare"]["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn operation(&self, id: &str) -> Operation {
        self.client.operation(id).await.unwrap()
    }

    /// Requests a signature and waits for it; it must complete.
    pub(crate) async fn signed(&self, vault: &str, input: Value) -> Operation {
        let id = self.request_signature(vault, input).await;
        let op = self.wait_final(&id, Duration::from_secs(120)).await;
        assert_eq!(op.state, "Completed", "signature {id}: {:?}", op.failure);
        op
    }

    /// Waits until `vault` has a Completed presignature (the signers' pool keeper made one).
    pub(crate) async fn wait_presignature(&self, vault: &str, within: Duration) {
        let start = Instant::now();
        while !self
            .client
            .operations_of(vault, "Presign")
            .await
            .unwrap()
            .iter()
            .any(|o| o.state == "Completed")
        {
            assert!(
                start.elapsed() < within,
                "no presignature of vault {vault} was made"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for a final state.
    pub(crate) async fn wait_final(&self, id: &str, within: Duration) -> Operation {
        let start = Instant::now();
        loop {
            let op = self.operation(id).await;
            if op.is_final() {
                return op;
            }
            assert!(
                start.elapsed() < within,
                "operation {id} still {} after {within:?}",
                op.state
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The operator CLI (`vsigner vault|op|device … --json`) as a subprocess.
pub(crate) struct Cli {
    pub(crate) url: String,
    pub(crate) id: String,
    pub(crate) secret: String,
}

impl Cli {
    /// Runs a command and returns its JSON output; panics with stderr if it fails.
    pub(crate) async fn run(&self, args: &[&str]) -> Value {
        self.run_with(args, &[]).await
    }

    /// [`Self::run`] with more environment variables.
    pub(crate) async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args(["--json", "--coordinator", &self.url])
            .env("VSIGNER_CLIENT_ID", &self.id)
            .env("VSIGNER_CLIENT_SECRET", &self.secret)
            .envs(env.iter().copied());
        let shown = format!("vsigner {}", args.join(" "));
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{shown} failed: {stderr}");
        assert!(
            !stdout.contains(&self.secret) && !stderr.contains(&self.secret),
            "{shown} shows the secret"
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{shown}: not one JSON document ({e}): {stdout}"))
    }
}

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM
/// files in `dir`: what an operator's internal CA hands out.
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

pub(crate) fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
    }
}
