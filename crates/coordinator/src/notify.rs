//! Optional MQTT notification: "operation needs you" on each device's notify topic.
//!
//! Topic: `vsigner/v1/devices/{deviceId}/notify`, QoS 1, payload
//! `{"operationId":"…","state":"AwaitingApproval"|"Ready"}`. The content is only a hint:
//! devices always re-read the operation through GraphQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use crate::domain::{DeviceId, OperationId, OperationState};
use crate::metrics;

/// The notify topic of a device.
pub fn notify_topic(device: &DeviceId) -> String {
    format!("vsigner/v1/devices/{device}/notify")
}

/// Publishes notifications to an MQTT broker.
#[derive(Clone)]
pub struct Notifier {
    client: AsyncClient,
    /// Whether the broker accepted the connection and it has not failed since.
    connected: Arc<AtomicBool>,
}

impl Notifier {
    /// Connects to `mqtt://`, `mqtts://`, `ws://` or `wss://` `[user:password@]host[:port]`
    /// (over WebSockets the path too, e.g. `/mqtt`) and drives the connection in a
    /// background task (reconnecting on errors). TLS (rustls with ring) checks the broker's
    /// certificate against `ca_cert` (a PEM file) or else the platform's roots.
    pub fn connect(url: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let opts = options(url, ca_cert)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        // Notifications are small and go out a few at a time (one per device): with Nagle's
        // algorithm each after the first waits for a delayed ACK (~40 ms).
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let connected = Arc::new(AtomicBool::new(false));
        let up = connected.clone();
        tokio::spawn(async move {
            // An outage is said once when it starts and once when it ends; the retries in
            // between are debug lines.
            let mut down = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up.store(true, Ordering::Relaxed);
                        metrics::broker_connected(true);
                        if down {
                            tracing::info!("MQTT broker reachable again; notifications resume");
                        } else {
                            tracing::info!("connected to the MQTT broker");
                        }
                        down = false;
                    }
                    Ok(_) => {}
                    Err(e) if down => {
                        up.store(false, Ordering::Relaxed);
                        tracing::debug!(error = %e, "MQTT broker still unreachable; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        up.store(false, Ordering::Relaxed);
                        metrics::broker_connected(false);
                        tracing::warn!(
                            error = %e,
                            "MQTT connection error: devices are not notified (they still poll); retrying every second"
                        );
                        down = true;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self { client, connected })
    }

    /// Whether the broker is connected now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Publishes a hint to each device (best effort; failures are logged). Never
    /// waits: while the broker is unreachable and the client's queue is full, hints
    /// are dropped (devices also poll).
    pub fn notify(&self, devices: &[DeviceId], op: &OperationId, state: OperationState) {
        let payload = serde_json::json!({"operationId": op, "state": state.as_str()}).to_string();
        for d in devices {
            if let Err(e) = self
                .client
                .try_publish(notify_topic(d), QoS::AtLeastOnce, false, payload.clone())
            {
                metrics::notify_failed();
                tracing::warn!(device = %d, error = %e, "MQTT notify dropped");
            }
        }
    }
}

/// The MQTT options for `url`, with TLS and WebSockets as its scheme says.
fn options(url: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<MqttOptions> {
    let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--mqtt is not a URL: {e}"))?;
    let (tls, websocket, default_port) = match parsed.scheme() {
        "mqtt" | "tcp" => (false, false, 1883),
        "mqtts" | "ssl" | "tls" => (true, false, 8883),
        "ws" => (false, true, 80),
        "wss" => (true, true, 443),
        other => anyhow::bail!("--mqtt has scheme `{other}`; use mqtt://, mqtts://, ws:// or wss://"),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--mqtt has no host"))?
        .to_owned();
    let port = parsed.port().unwrap_or(default_port);
    let client_id = format!(
        "vsigner-coordinator-{}",
        hex::encode(crate::crypto::random_bytes::<6>())
    );
    let mut opts = if websocket {
        // Over WebSockets the broker address is the URL itself (path included), without
        // the credentials (they go in the MQTT CONNECT packet).
        let mut ws_url = parsed.clone();
        let _ = ws_url.set_username("");
        let _ = ws_url.set_password(None);
        let _ = ws_url.set_port(Some(port));
        MqttOptions::new(client_id, ws_url.to_string(), port)
    } else {
        MqttOptions::new(client_id, host.trim_matches(['[', ']']), port)
    };
    opts.set_keep_alive(Duration::from_secs(30));
    if !parsed.username().is_empty() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let password = parsed.password().map(decode).unwrap_or_default();
        opts.set_credentials(decode(parsed.username()), password);
    }
    if !tls
        && parsed.password().is_some()
        && !matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
    {
        tracing::warn!("--mqtt is not TLS and carries a password: it crosses the network in clear; use mqtts:// or wss://");
    }
    if ca_cert.is_some() && !tls {
        anyhow::bail!("--mqtt-ca-cert is set but --mqtt is not TLS (use mqtts:// or wss://)");
    }
    if tls {
        // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = match ca_cert {
            Some(path) => {
                let ca = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("--mqtt-ca-cert {}: {e}", path.display()))?;
                if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
                    anyhow::bail!("--mqtt-ca-cert {}: not a PEM certificate", path.display());
                }
                TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                }
            }
            None => std::panic::catch_unwind(TlsConfiguration::default).map_err(|_| {
                anyhow::anyhow!(
                    "the platform has no CA certificates; give the broker's CA with --mqtt-ca-cert"
                )
            })?,
        };
        opts.set_transport(if websocket {
            Transport::wss_with_config(config)
        } else {
            Transport::tls_with_config(config)
        });
    } else if websocket {
        opts.set_transport(Transport::Ws);
    }
    Ok(opts)
}
