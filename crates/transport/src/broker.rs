//! The embedded MQTT broker (rumqttd) for single-machine use and tests.
//!
//! rumqttd cannot be stopped and cannot report the port it chose for port 0: the broker
//! lives until the process exits, and the caller picks the port.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::error::TransportError;

/// Settings of the embedded broker.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Address to listen on (MQTT 3.1.1).
    pub listen: SocketAddr,
    /// Largest message accepted.
    pub max_payload: usize,
    /// Required user name and password, if any.
    pub credentials: Option<(String, zeroize::Zeroizing<String>)>,
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("listen", &self.listen)
            .field("max_payload", &self.max_payload)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl BrokerConfig {
    /// Defaults for `listen`: messages up to the transport's default envelope limit, no auth.
    pub fn new(listen: SocketAddr) -> Self {
        BrokerConfig {
            listen,
            max_payload: crate::envelope::DEFAULT_MAX_ENVELOPE + 4096,
            credentials: None,
        }
    }
}

/// Starts the broker on its own threads and waits until it accepts connections.
pub fn start(config: &BrokerConfig) -> Result<(), TransportError> {
    if TcpStream::connect_timeout(&config.listen, Duration::from_millis(200)).is_ok() {
        return Err(TransportError::Broker(format!(
            "{} is already in use",
            config.listen
        )));
    }
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: config.max_payload,
        max_inflight_count: 500,
        auth: config
            .credentials
            .as_ref()
            .map(|(user, pass)| HashMap::from([(user.clone(), pass.to_string())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-1".into(),
        listen: config.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = RouterConfig {
        max_connections: 10_000,
        max_outgoing_packet_count: 1000,
        max_segment_size: (config.max_payload * 4).max(100 * 1024 * 1024),
        max_segment_count: 10,
        ..RouterConfig::default()
    };
    let rumqttd_config = Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(rumqttd_config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| TransportError::Broker(e.to_string()))?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect_timeout(&config.listen, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(TransportError::Broker(format!(
        "did not start listening on {}",
        config.listen
    )))
}
