//! The whole system in one process, for `vsigner demo` and `vsigner bench e2e`: the embedded
//! MQTT broker, the coordinator on a temporary SQLite database, the approval webhook, and one
//! signer daemon per virtual device, each with its own keystore.
//!
//! Nothing is short-cut: the daemons are [`vsigner_signer::Daemon`]s configured through
//! [`SignerConfig::load`] exactly as `vsigner run` is (only from generated values instead
//! of a file), they register their devices with the coordinator, ask the webhook over HTTP,
//! vote, and run the protocols over MQTT with end-to-end encrypted envelopes.

pub(crate) mod approver;
pub(crate) mod primes;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand_core::RngCore;
use serde_json::Value;
use url::Url;
use vsigner_coordinator::{Clock, InitArgs, RunningCoordinator, ServeArgs};
use vsigner_signer::coordinator_api::CoordinatorClient;
use vsigner_signer::prime_stock::PrimeStock;
use vsigner_signer::{Daemon, SignerConfig};
use vsigner_tss::primes::PrimeSet;
use zeroize::Zeroizing;

use crate::operator::{text, Operator};
use approver::Approver;

/// When a signature request was sent, answered by the coordinator, and seen completed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignTiming {
    pub(crate) sent: Instant,
    pub(crate) answered: Instant,
    pub(crate) seen: Instant,
}

/// A virtual device of the system (run by one of its daemons).
pub(crate) struct VirtualSigner {
    pub(crate) name: String,
    pub(crate) device_id: String,
}

/// Settings of the system's coordinator and daemons.
// No `Debug`: `broker` and `coordinator_database` may carry a password.
#[derive(Clone, Default)]
pub(crate) struct SystemSettings {
    /// An MQTT broker to use (`mqtt://host:port`) instead of starting the embedded one.
    pub(crate) broker: Option<String>,
    /// The coordinator's database (`sqlite://…` or `postgres://…`) instead of a new SQLite
    /// file in the system's temporary directory. A new organisation is made in it.
    pub(crate) coordinator_database: Option<String>,
    /// `PresignaturePoolTarget` of every daemon.
    pub(crate) presignature_pool_target: u32,
    /// `PollIntervalSeconds` of every daemon (`None`: the default).
    pub(crate) poll_interval_seconds: Option<f64>,
    /// `AllowPublicTestPrimes` of every daemon: set when the prime sets are (partly) the
    /// public test pool, which a daemon refuses otherwise.
    pub(crate) allow_public_test_primes: bool,
}

/// The running system. Call [`LocalSystem::shutdown`] at the end; its files live in a
/// temporary directory removed when it is dropped.
pub(crate) struct LocalSystem {
    dir: tempfile::TempDir,
    coordinator: Option<RunningCoordinator>,
    coordinator_url: Url,
    broker_url: String,
    org_id: String,
    signer_client: (String, Zeroizing<String>),
    settings: SystemSettings,
    pub(crate) operator: Operator,
    pub(crate) approver: Approver,
    pub(crate) signers: Vec<VirtualSigner>,
    daemons: Vec<Daemon>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_hex(bytes: usize) -> Zeroizing<String> {
    let mut b = Zeroizing::new(vec![0u8; bytes]);
    rand_core::OsRng.fill_bytes(&mut b);
    Zeroizing::new(hex::encode(&*b))
}

impl LocalSystem {
    /// Starts the broker, the coordinator (with an organisation, an operator and a signer API
    /// client) and the approval webhook. No device yet: see [`LocalSystem::add_signer`].
    pub(crate) async fn start(settings: SystemSettings) -> anyhow::Result<LocalSystem> {
        let dir = tempfile::Builder::new()
            .prefix("vsigner-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;

        let broker_url = match &settings.broker {
            Some(url) => url.clone(),
            None => {
                // The embedded broker cannot bind port 0 and report it: take a free port, and another
                // if a parallel process took it first.
                let mut attempt = 0;
                let broker_addr = loop {
                    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                    let config = vsigner_transport::broker::BrokerConfig::new(addr);
                    match tokio::task::spawn_blocking(move || vsigner_transport::broker::start(&config))
                        .await?
                    {
                        Ok(()) => break addr,
                        Err(e) if attempt < 4 => {
                            tracing::debug!(error = %e, "embedded broker port taken; trying another");
                            attempt += 1;
                        }
                        Err(e) => {
                            return Err(anyhow::Error::new(e).context("cannot start the embedded MQTT broker"))
                        }
                    }
                };
                format!("mqtt://{broker_addr}")
            }
        };

        let database = settings.coordinator_database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("coordinator.db").display()
            )
        });
        let org = vsigner_coordinator::init(&InitArgs {
            database: database.clone(),
            org: "vsigner demo".to_owned(),
        })
        .await
        .context("cannot create the coordinator's organisation")?;
        let coordinator = vsigner_coordinator::start(
            ServeArgs {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                database,
                mqtt: Some(broker_url.clone()),
                sweep_interval_secs: 1,
                ..ServeArgs::default()
            },
            Clock::default(),
        )
        .await
        .context("cannot start the coordinator")?;
        let coordinator_url: Url = format!("http://{}", coordinator.addr()).parse()?;
        let operator = Operator::new(CoordinatorClient::new(
            &coordinator_url,
            org.operator_client_id.as_str(),
            Zeroizing::new(org.operator_client_secret.expose().to_owned()),
        )?);
        let approver = Approver::start()
            .await
            .context("cannot start the approval webhook")?;
        Ok(LocalSystem {
            dir,
            coordinator: Some(coordinator),
            coordinator_url,
            broker_url,
            org_id: org.org_id.to_string(),
            signer_client: (
                org.signer_client_id.to_string(),
                Zeroizing::new(org.signer_client_secret.expose().to_owned()),
            ),
            settings,
            operator,
            approver,
            signers: Vec::new(),
            daemons: Vec::new(),
        })
    }

    /// The web console's address: the coordinator's own (127.0.0.1, where it listens; a
    /// `localhost` name could reach another program listening on `[::1]`).
    pub(crate) fn console_url(&self) -> String {
        format!("{}console/", self.coordinator_url)
    }

    /// The organisation's id.
    pub(crate) fn org_id(&self) -> &str {
        &self.org_id
    }

    /// Where the system keeps its files (coordinator database, keystores).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The configuration of a daemon running the device `name`, as `vsigner run` reads it
    /// (`VSIGNER_<Key>` values).
    fn signer_config(&self, names: &[&str], storage: &std::path::Path) -> anyhow::Result<SignerConfig> {
        // Secrets stay in wiped buffers until the loader takes its copy.
        let values: Vec<(String, Zeroizing<String>)> = [
            ("Port", "0".to_owned()),
            ("PrometheusPort", "0".to_owned()),
            ("OrgId", self.org_id.clone()),
            ("AuthClientId", self.signer_client.0.clone()),
            ("AuthClientSecret", self.signer_client.1.to_string()),
            ("APIBaseURL", self.coordinator_url.to_string()),
            ("MQTTEndpoint", self.broker_url.clone()),
            ("InitialDevices", names.join(",")),
            ("ApprovalMode", "API".to_owned()),
            ("ExternalTransactionApprovalURL", self.approver.url().to_owned()),
            ("ExternalReshareApprovalURL", self.approver.url().to_owned()),
            ("ApprovalHTTPPublicKeyHex", self.approver.public_key_hex()),
            ("TraceSpanExporter", "none".to_owned()),
            ("STORAGE_BUCKET_URL", storage.display().to_string()),
            ("KeystoreSealing", "passphrase".to_owned()),
            ("KeystorePassphrase", random_hex(32).to_string()),
            ("SignerAPIToken", random_hex(32).to_string()),
            // Primes are imported before the start; none are generated in the background.
            ("PrimePoolTarget", "0".to_owned()),
            // The public test primes: for a demonstration only (the caller warns).
            (
                "AllowPublicTestPrimes",
                self.settings.allow_public_test_primes.to_string(),
            ),
            (
                "PresignaturePoolTarget",
                self.settings.presignature_pool_target.to_string(),
            ),
        ]
        .into_iter()
        .chain(
            self.settings
                .poll_interval_seconds
                .map(|s| ("PollIntervalSeconds", s.to_string())),
        )
        .map(|(k, v)| (format!("VSIGNER_{k}"), Zeroizing::new(v)))
        .collect();
        SignerConfig::load(None, values.iter().map(|(k, v)| (k.clone(), v.to_string())))
            .map_err(|e| anyhow::anyhow!("configuration of {}: {e}", names.join(", ")))
    }

    /// Starts a daemon with one new device `name` in its own keystore, after putting
    /// `primes` in its prime stock; registers the device's key with the approval webhook.
    /// Returns the device id.
    pub(crate) async fn add_signer(&mut self, name: &str, primes: &[PrimeSet]) -> anyhow::Result<String> {
        let mut ids = self.add_daemon(&[name], primes).await?;
        Ok(ids.remove(0))
    }

    /// Starts one daemon (one `vsigner run`) controlling the new devices `names`, sharing one
    /// keystore whose prime stock gets `primes` (each device's aux-info takes a set);
    /// registers the devices' keys with the approval webhook. Returns their ids, in order.
    pub(crate) async fn add_daemon(
        &mut self,
        names: &[&str],
        primes: &[PrimeSet],
    ) -> anyhow::Result<Vec<String>> {
        let storage: PathBuf = self.dir.path().join(format!("keystore-{}", names.join("+")));
        let config = self.signer_config(names, &storage)?;
        if !primes.is_empty() {
            let keystore = vsigner_signer::daemon::open_keystore(&config).await?;
            let stock = PrimeStock::open(std::sync::Arc::new(keystore)).await?;
            for set in primes {
                stock.put(set).await?;
            }
        }
        let daemon = Daemon::start(config)
            .await
            .with_context(|| format!("cannot start the signer of {}", names.join(", ")))?;
        let started = daemon.device_list().await;
        self.daemons.push(daemon);
        // The webhook authenticates requests with the keys the coordinator registered.
        let devices = self.operator.devices().await?;
        let mut ids = Vec::new();
        for name in names {
            let Some(device_id) = started.iter().find(|d| d.name == *name).map(|d| d.id.clone()) else {
                bail!("the signer of {name} started without its device");
            };
            let key_hex = devices
                .as_array()
                .and_then(|all| all.iter().find(|d| d["id"] == device_id.as_str()))
                .map(|d| text(&d["identitySigningKey"]).to_owned())
                .with_context(|| format!("the coordinator does not list device {device_id}"))?;
            let key_bytes: [u8; 32] = hex::decode(&key_hex)
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("device {device_id} has a malformed identity key"))?;
            self.approver
                .know_device(&device_id, ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)?);
            self.signers.push(VirtualSigner {
                name: (*name).to_owned(),
                device_id: device_id.clone(),
            });
            ids.push(device_id);
        }
        Ok(ids)
    }

    /// The name of a device id (or the id itself when unknown).
    pub(crate) fn device_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.signers
            .iter()
            .find(|s| s.device_id == id)
            .map_or(id, |s| s.name.as_str())
    }

    /// Waits until operation `op` ends (the coordinator answers when it does) and fails with
    /// its own account unless it completed.
    pub(crate) async fn completed(&self, op: &Value, what: &str, timeout: Duration) -> anyhow::Result<Value> {
        let op = self.operator.wait_final(text(&op["id"]), timeout).await?;
        if op["state"] == "Completed" {
            return Ok(op);
        }
        let mut why = format!(
            "{what}: operation {} ended {}",
            text(&op["id"]),
            text(&op["state"])
        );
        for reason in [&op["failure"]["reason"], &op["rejectionReason"]] {
            if let Some(r) = reason.as_str() {
                why.push_str(&format!(" ({r})"));
            }
        }
        bail!(why)
    }

    /// Requests a signature (`input` as `requestSignature` takes it) and waits for it: the
    /// completed operation and the latency from the request to the
    /// coordinator's verified result.
    pub(crate) async fn sign(&self, input: Value, what: &str) -> anyhow::Result<(Value, Duration)> {
        let (op, timing) = self.sign_timed(input, what).await?;
        Ok((op, timing.seen - timing.sent))
    }

    /// [`LocalSystem::sign`] with the moments the request was sent, answered and seen
    /// completed.
    pub(crate) async fn sign_timed(&self, input: Value, what: &str) -> anyhow::Result<(Value, SignTiming)> {
        let sent = Instant::now();
        let op = self.operator.request_signature(input).await?;
        let answered = Instant::now();
        let op = self.completed(&op, what, Duration::from_secs(180)).await?;
        let seen = Instant::now();
        Ok((op, SignTiming { sent, answered, seen }))
    }

    /// Creates a vault on every device so far and waits for its keygen: the vault and the keygen's duration.
    pub(crate) async fn create_vault(
        &self,
        name: &str,
        curve: &str,
        threshold: u16,
    ) -> anyhow::Result<(Value, Duration)> {
        self.create_weighted_vault(name, curve, threshold, &[]).await
    }

    /// A vault of every signer's device, the first ones with the weights `weights` (the
    /// number of shares each holds; 1 for the rest), the threshold counted in shares.
    pub(crate) async fn create_weighted_vault(
        &self,
        name: &str,
        curve: &str,
        threshold: u16,
        weights: &[u32],
    ) -> anyhow::Result<(Value, Duration)> {
        let start = Instant::now();
        let ids: Vec<String> = self
            .signers
            .iter()
            .enumerate()
            .map(|(k, s)| match weights.get(k) {
                Some(w) => format!("{}:{w}", s.device_id),
                None => s.device_id.clone(),
            })
            .collect();
        let op = self.operator.create_vault(name, curve, threshold, &ids).await?;
        let op = self
            .completed(&op, &format!("{curve} keygen"), Duration::from_secs(600))
            .await?;
        let took = start.elapsed();
        Ok((self.operator.vault(text(&op["vaultId"])).await?, took))
    }

    /// Stops the daemons (running protocols get their grace period) and the coordinator.
    pub(crate) async fn shutdown(mut self) {
        for d in &self.daemons {
            d.shutdown().await;
        }
        if let Some(c) = self.coordinator.take() {
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), c.shutdown()).await {
                tracing::warn!(error = %e, "the coordinator did not stop in time");
            }
        }
    }
}
