//! The MQTT link of one device: one persistent session (clean session off, QoS 1) subscribed
//! to the device's inbox and notification topics, reconnecting with backoff.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use crate::error::{Rejection, TransportError};
use crate::identity::{DeviceId, DeviceIdentity, DevicePublicKeys};
use crate::inbox::{lock, Inbox, InboxLimits, InboxStats};
use crate::session::{RunGuard, Session, SessionSpec, ENVELOPE_QOS};
use crate::topics::Topics;

/// How to reach the broker.
#[derive(Clone)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` or `tcp://…` (plain, default port 1883), `mqtts://…`, `ssl://…` or
    /// `tls://…` (TLS, default port 8883). User info in the URL is used as credentials
    /// unless `username` is set.
    pub endpoint: String,
    /// Broker user name.
    pub username: Option<String>,
    /// Broker password (never shown by `Debug`).
    pub password: Option<Zeroizing<String>>,
    /// PEM of the CA that signed the broker's certificate (`MQTTCACert`); without it, TLS
    /// endpoints are checked against the platform's roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How long [`Link::connect`] waits for the first connection and subscription.
    pub connect_timeout: Duration,
    /// Longest wait between reconnection attempts (backoff doubles from 100 ms up to it).
    pub max_backoff: Duration,
    /// Topic layout.
    pub topics: Topics,
    /// Inbox bounds, including the largest envelope.
    pub limits: InboxLimits,
}

impl MqttConfig {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        MqttConfig {
            endpoint: endpoint.into(),
            username: None,
            password: None,
            ca_cert_pem: None,
            keep_alive: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(15),
            max_backoff: Duration::from_secs(10),
            topics: Topics::default(),
            limits: InboxLimits::default(),
        }
    }

    fn options(&self, client_id: &str) -> Result<MqttOptions, TransportError> {
        let bad = |reason: String| TransportError::Config {
            key: "MQTTEndpoint",
            reason,
        };
        let url = url::Url::parse(&self.endpoint).map_err(|e| {
            bad(format!(
                "{e}; expected e.g. mqtt://host:1883, mqtts://host:8883 or wss://host:8084/mqtt"
            ))
        })?;
        let scheme = BrokerScheme::of(&url).map_err(bad)?;
        let tls = scheme.tls();
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?;
        let port = url.port().unwrap_or(scheme.default_port());
        let mut options = if scheme.websocket() {
            // Over WebSockets the broker address is the URL (path included), without the
            // credentials (they go in the MQTT CONNECT packet).
            let mut ws_url = url.clone();
            let _ = ws_url.set_username("");
            let _ = ws_url.set_password(None);
            let _ = ws_url.set_port(Some(port));
            MqttOptions::new(client_id, ws_url.to_string(), port)
        } else {
            MqttOptions::new(client_id, host.trim_matches(['[', ']']), port)
        };
        options
            .set_clean_session(false)
            .set_keep_alive(self.keep_alive)
            .set_inflight(100)
            .set_request_channel_capacity(4096);
        let packet = self.limits.max_packet.max(self.limits.max_envelope + 4096);
        options.set_max_packet_size(packet, packet);
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let username = self
            .username
            .clone()
            .or_else(|| (!url.username().is_empty()).then(|| decode(url.username())));
        let password = self
            .password
            .as_ref()
            .map(|p| p.to_string())
            .or_else(|| url.password().map(decode))
            .map(Zeroizing::new);
        if let Some(user) = username {
            options.set_credentials(user, password.as_deref().map(String::as_str).unwrap_or(""));
        }
        if tls {
            // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = match &self.ca_cert_pem {
                Some(ca) => {
                    use rustls_pki_types::pem::PemObject;
                    let certs =
                        rustls_pki_types::CertificateDer::pem_slice_iter(ca).collect::<Result<Vec<_>, _>>();
                    if !matches!(certs, Ok(ref c) if !c.is_empty()) {
                        return Err(TransportError::Config {
                            key: "MQTTCACert",
                            reason: "not a PEM certificate".into(),
                        });
                    }
                    TlsConfiguration::Simple {
                        ca: ca.clone(),
                        alpn: None,
                        client_auth: None,
                    }
                }
                None => std::panic::catch_unwind(TlsConfiguration::default).map_err(|_| {
                    TransportError::Config {
                        key: "MQTTCACert",
                        reason: "the platform has no CA certificates; set the broker's CA".into(),
                    }
                })?,
            };
            options.set_transport(if scheme.websocket() {
                Transport::wss_with_config(config)
            } else {
                Transport::tls_with_config(config)
            });
        } else if scheme.websocket() {
            options.set_transport(Transport::Ws);
        }
        Ok(options)
    }
}

/// How a broker URL connects: MQTT over TCP or WebSockets, with or without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerScheme {
    /// `mqtt://` or `tcp://` (port 1883).
    Tcp,
    /// `mqtts://`, `ssl://` or `tls://` (port 8883).
    Tls,
    /// `ws://` (port 80; the URL's path is the WebSocket endpoint, e.g. `/mqtt`).
    Ws,
    /// `wss://` (port 443; io.finnet's broker is `wss://…:8084`).
    Wss,
}

impl BrokerScheme {
    /// The scheme of `url`, or why it is not one.
    pub fn of(url: &url::Url) -> Result<Self, String> {
        match url.scheme() {
            "mqtt" | "tcp" => Ok(Self::Tcp),
            "mqtts" | "ssl" | "tls" => Ok(Self::Tls),
            "ws" => Ok(Self::Ws),
            "wss" => Ok(Self::Wss),
            other => Err(format!(
                "unknown scheme `{other}`; use mqtt://, tcp://, mqtts://, ssl://, tls://, ws:// or wss://"
            )),
        }
    }

    /// Whether the connection is encrypted (the broker is authenticated by its certificate).
    pub fn tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Whether MQTT runs over WebSockets.
    pub fn websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The port when the URL has none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Tcp => 1883,
            Self::Tls => 8883,
            Self::Ws => 80,
            Self::Wss => 443,
        }
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = match url::Url::parse(&self.endpoint) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("<redacted>"));
                }
                url.to_string()
            }
            Err(_) => "<unparsable>".into(),
        };
        f.debug_struct("MqttConfig")
            .field("endpoint", &endpoint)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert_pem.is_some())
            .field("topics", &self.topics)
            .finish()
    }
}

/// A snapshot of a link's counters.
#[derive(Debug)]
pub struct LinkStats {
    /// Whether the link is connected now.
    pub connected: bool,
    /// Connections lost since start.
    pub reconnects: u64,
    /// Inbox counters.
    pub inbox: InboxStats,
}

pub(crate) struct LinkInner {
    pub(crate) identity: Arc<DeviceIdentity>,
    pub(crate) max_envelope: usize,
    pub(crate) inbox: Mutex<Inbox>,
    client: AsyncClient,
    topics: Topics,
    connected: AtomicBool,
    reconnects: AtomicU64,
    /// Set by [`Link::close`]: the connection's end is expected, not a loss.
    closing: AtomicBool,
}

impl LinkInner {
    pub(crate) fn publish(&self, to: &DeviceId, bytes: bytes::Bytes) -> Result<(), TransportError> {
        self.client
            .try_publish(self.topics.inbox(to), ENVELOPE_QOS, false, bytes.to_vec())
            .map_err(|e| TransportError::Mqtt(e.to_string()))
    }
}

/// One device's connection to the broker.
pub struct Link {
    inner: Arc<LinkInner>,
    task: tokio::task::JoinHandle<()>,
    notifications: Mutex<Option<mpsc::Receiver<bytes::Bytes>>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("device", self.inner.identity.device_id())
            .finish()
    }
}

impl Link {
    /// Connects `identity`'s device to the broker and subscribes to its topics; returns once
    /// subscribed, or fails after `connect_timeout` with the last connection error.
    pub async fn connect(identity: Arc<DeviceIdentity>, config: MqttConfig) -> Result<Link, TransportError> {
        let device = identity.device_id().clone();
        let options = config.options(&format!("vsigner-{device}"))?;
        let (client, mut eventloop) = AsyncClient::new(options, 4096);
        // Protocol messages are small and latency-bound: without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs add ~40 ms to each hop.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let inner = Arc::new(LinkInner {
            inbox: Mutex::new(Inbox::new(identity.clone(), config.limits.clone())),
            max_envelope: config.limits.max_envelope,
            identity,
            client,
            topics: config.topics.clone(),
            connected: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        });
        let (notify_tx, notify_rx) = mpsc::channel(256);
        let (ready_tx, mut ready_rx) = watch::channel(Err::<(), String>("not connected yet".into()));
        let task = tokio::spawn(drive(
            inner.clone(),
            eventloop,
            notify_tx,
            ready_tx,
            config.max_backoff,
        ));
        let ready = tokio::time::timeout(config.connect_timeout, async {
            loop {
                if ready_rx.borrow_and_update().is_ok() {
                    return Ok(());
                }
                if ready_rx.changed().await.is_err() {
                    return Err("the connection task ended".to_string());
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => Ok(Link {
                inner,
                task,
                notifications: Mutex::new(Some(notify_rx)),
            }),
            Ok(Err(e)) => {
                task.abort();
                Err(TransportError::Mqtt(e))
            }
            Err(_) => {
                task.abort();
                let last = ready_rx.borrow().clone().err().unwrap_or_default();
                Err(TransportError::Mqtt(format!(
                    "could not connect to the broker within {:?}: {last}",
                    config.connect_timeout
                )))
            }
        }
    }

    /// The device this link serves.
    pub fn device_id(&self) -> &DeviceId {
        self.inner.identity.device_id()
    }

    /// Opens a protocol run in which this device runs exactly one party. Envelopes that
    /// arrived for it before are processed now.
    pub fn open_session(&self, spec: SessionSpec) -> Result<Session, TransportError> {
        let mut sessions = self.open_sessions(spec)?;
        match (sessions.pop(), sessions.is_empty()) {
            (Some(session), true) => Ok(session),
            _ => Err(TransportError::InvalidSession(format!(
                "{} runs several parties of this run; open them with open_sessions",
                self.device_id()
            ))),
        }
    }

    /// Opens a protocol run: one [`Session`] for each party this device runs in it, in party
    /// order (a device of weight `w` appears `w` times among the participants). Every party
    /// must be run to the end together: the run stays open here until all of them are
    /// dropped. Envelopes that arrived for it before are processed now.
    pub fn open_sessions(&self, spec: SessionSpec) -> Result<Vec<Session>, TransportError> {
        let me = self.device_id();
        for (i, (d, keys)) in spec.participants.iter().enumerate() {
            if spec.participants[..i].iter().any(|(o, k)| o == d && k != keys) {
                return Err(TransportError::InvalidSession(format!(
                    "device {d} appears with two different keys among the participants"
                )));
            }
        }
        let mine: Vec<u16> = spec
            .participants
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| d == me)
            .map(|(i, _)| u16::try_from(i))
            .collect::<Result<_, _>>()
            .map_err(|_| TransportError::InvalidSession("too many participants".into()))?;
        let Some(first) = mine.first() else {
            return Err(TransportError::InvalidSession(format!(
                "{me} is not a participant of this run"
            )));
        };
        if u16::try_from(spec.participants.len()).map_or(true, |n| n == u16::MAX) {
            return Err(TransportError::InvalidSession("too many participants".into()));
        }
        if &spec.participants[usize::from(*first)].1 != self.inner.identity.public_keys() {
            return Err(TransportError::InvalidSession(format!(
                "the keys registered for {me} are not this device's keys"
            )));
        }
        let participants: Arc<[_]> = spec.participants.clone().into();
        lock(&self.inner.inbox).learn(spec.participants.iter().cloned());
        let (receivers, record) =
            lock(&self.inner.inbox).open(spec.execution_id, participants.clone(), &mine, Instant::now())?;
        let guard = RunGuard::new(self.inner.clone(), spec.execution_id);
        Ok(receivers
            .into_iter()
            .map(|(index, rx)| {
                Session::new(
                    guard.clone(),
                    &spec,
                    index,
                    participants.clone(),
                    rx,
                    record.clone(),
                )
            })
            .collect())
    }

    /// Lets envelopes signed by `peers` be buffered when they arrive before their run opens
    /// here (the devices whose signed records this device checked). Envelopes of a run not
    /// open yet from any other sender are dropped as they arrive.
    pub fn learn_peers(&self, peers: impl IntoIterator<Item = (DeviceId, DevicePublicKeys)>) {
        lock(&self.inner.inbox).learn(peers);
    }

    /// The coordinator's notifications for this device (raw payloads); can be taken once.
    pub fn take_notifications(&self) -> Option<mpsc::Receiver<bytes::Bytes>> {
        lock(&self.notifications).take()
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            connected: self.inner.connected.load(Ordering::Relaxed),
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
            inbox: lock(&self.inner.inbox).stats(),
        }
    }

    /// Envelopes refused that belonged to no open run (garbled, oversized, late, replayed,
    /// never claimed), most recent last.
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.inner.inbox).orphan_rejections()
    }

    /// Disconnects; open runs fail with [`TransportError::LinkClosed`].
    pub async fn close(self) {
        self.inner.closing.store(true, Ordering::Relaxed);
        let _ = self.inner.client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        lock(&self.inner.inbox).fail_all(|| TransportError::LinkClosed);
    }
}

/// Runs the MQTT event loop: routes inbox envelopes, forwards notifications, resubscribes on
/// every connection, and backs off between reconnection attempts.
///
/// Two broker behaviours get special care:
/// - a reconnection where the broker has no session for the device (it restarted without
///   persistence, or expired the session): messages in flight to and from the device are
///   lost (rumqttc also drops its unacknowledged publishes), so every open run fails at once
///   with [`TransportError::SessionLost`] instead of waiting for its idle timeout;
/// - a packet above the client's limit: MQTT 3.1.1 cannot refuse one message, and with a
///   persistent session the broker would redeliver it on every reconnection, leaving the
///   device deaf for good. The next connection is made with a clean session (discarding the
///   queued message, and whatever else was queued), then sessions are persistent again.
async fn drive(
    inner: Arc<LinkInner>,
    mut eventloop: EventLoop,
    notify_tx: mpsc::Sender<bytes::Bytes>,
    ready_tx: watch::Sender<Result<(), String>>,
    max_backoff: Duration,
) {
    let device = inner.identity.device_id().clone();
    let inbox_topic = inner.topics.inbox(&device);
    let notify_topic = inner.topics.notify(&device);
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                inner.connected.store(true, Ordering::Relaxed);
                tracing::info!(%device, session_present = ack.session_present, "connected to the MQTT broker");
                if connected_before && !ack.session_present {
                    let open = {
                        let mut inbox = lock(&inner.inbox);
                        inbox.fail_all(|| TransportError::SessionLost);
                        inbox.open_runs()
                    };
                    if open > 0 {
                        tracing::warn!(%device, runs = open, "the broker lost the session: failing the open runs");
                    }
                }
                connected_before = true;
                eventloop.mqtt_options.set_clean_session(false);
                let topics = [
                    rumqttc::SubscribeFilter::new(inbox_topic.clone(), QoS::AtLeastOnce),
                    rumqttc::SubscribeFilter::new(notify_topic.clone(), QoS::AtLeastOnce),
                ];
                if let Err(e) = inner.client.try_subscribe_many(topics) {
                    tracing::warn!(%device, error = %e, "cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                backoff = Duration::from_millis(100);
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    let reason =
                        format!("the broker refused the subscription to {inbox_topic} (check its ACL)");
                    tracing::error!(%device, "{reason}");
                    let _ = ready_tx.send_replace(Err(reason));
                } else {
                    let _ = ready_tx.send_replace(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic == inbox_topic {
                    lock(&inner.inbox).route(&publish.payload, Instant::now());
                } else if publish.topic == notify_topic && notify_tx.try_send(publish.payload).is_err() {
                    tracing::debug!(%device, "notification dropped: the receiver is busy or gone");
                }
            }
            Ok(_) => {}
            Err(e) => {
                if inner.closing.load(Ordering::Relaxed) {
                    inner.connected.store(false, Ordering::Relaxed);
                    tracing::debug!(%device, error = %e, "MQTT connection closed");
                    return;
                }
                if inner.connected.swap(false, Ordering::Relaxed) {
                    inner.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                if matches!(e, rumqttc::ConnectionError::RequestsDone) {
                    return;
                }
                if matches!(
                    e,
                    rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)
                    ))
                ) {
                    tracing::warn!(%device, "a message above the MQTT packet limit arrived: reconnecting with a clean session to discard it");
                    eventloop.mqtt_options.set_clean_session(true);
                }
                let reason = e.to_string();
                tracing::warn!(%device, error = %reason, retry_in = ?backoff, "MQTT connection lost");
                ready_tx.send_if_modified(|state| {
                    if state.is_err() {
                        *state = Err(reason);
                        true
                    } else {
                        false
                    }
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}
