//! The embedded MQTT broker (rumqttd) for single-machine use and tests.
//!
//! rumqttd cannot be stopped and cannot report the port it chose for port 0: the broker
//! lives until the process exits, and the caller picks the port.
//!
//! # No Nagle delays
//! rumqttd binds its listener itself and sets no `TCP_NODELAY` on the connections it
//! accepts, so every small packet it forwards while an earlier one is unacknowledged waits
//! for the peer's delayed ACK: about 40 ms per broker round trip on loopback, against
//! 1.6 ms through Mosquitto. Linux copies `TCP_NODELAY` from a listening socket to the
//! sockets it accepts, so once the broker listens, [`start`] finds its listener among this
//! process's own file descriptors (a duplicate from `pidfd_getfd`, no `unsafe`) and sets
//! the option there. Where that is not possible (another OS, a seccomp profile that
//! refuses `pidfd_getfd`) the broker runs as before and a warning says so.

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
            match nodelay::set_on_listener(config.listen) {
                Ok(()) => tracing::debug!(listen = %config.listen, "embedded broker: TCP_NODELAY set"),
                Err(e) => tracing::warn!(
                    listen = %config.listen,
                    reason = %e,
                    "embedded broker without TCP_NODELAY: each broker round trip may wait ~40 ms for a delayed ACK (use Mosquitto for low latency)"
                ),
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(TransportError::Broker(format!(
        "did not start listening on {}",
        config.listen
    )))
}

/// Setting `TCP_NODELAY` on the listener rumqttd opened (see the module documentation).
pub(crate) mod nodelay {
    use std::net::SocketAddr;

    /// Sets `TCP_NODELAY` on this process's listening TCP socket bound to `listen`.
    #[cfg(target_os = "linux")]
    pub(crate) fn set_on_listener(listen: SocketAddr) -> std::io::Result<()> {
        let listener = find_own_socket(|fd| {
            rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false) && local_addr(fd) == Some(listen)
        })?
        .ok_or_else(|| std::io::Error::other(format!("no listening socket on {listen} in this process")))?;
        rustix::net::sockopt::set_tcp_nodelay(&listener, true)?;
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn set_on_listener(_listen: SocketAddr) -> std::io::Result<()> {
        Err(std::io::Error::other(
            "only Linux lets accepted sockets inherit TCP_NODELAY from the listener",
        ))
    }

    /// A duplicate of the first of this process's sockets that `matches`.
    ///
    /// The descriptor numbers are read before anything is duplicated (so duplicates are never
    /// listed themselves), only sockets are duplicated (closing a duplicate of a file would
    /// drop the process's `fcntl` locks on it), and each duplicate is closed unless it
    /// matches.
    #[cfg(target_os = "linux")]
    pub(crate) fn find_own_socket(
        matches: impl Fn(&std::os::fd::OwnedFd) -> bool,
    ) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
        use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};
        let sockets: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let number = entry.file_name().to_str()?.parse::<i32>().ok()?;
                let target = std::fs::read_link(entry.path()).ok()?;
                target.to_str()?.starts_with("socket:").then_some(number)
            })
            .collect();
        let me = pidfd_open(getpid(), PidfdFlags::empty())
            .map_err(|e| std::io::Error::other(format!("pidfd_open of this process: {e}")))?;
        for number in sockets {
            match pidfd_getfd(&me, number, PidfdGetfdFlags::empty()) {
                Ok(fd) if matches(&fd) => return Ok(Some(fd)),
                Ok(_) => {}
                // Closed since the listing.
                Err(rustix::io::Errno::BADF) => {}
                // Refused (a seccomp profile, an old kernel): say so.
                Err(e) => return Err(std::io::Error::other(format!("pidfd_getfd: {e}"))),
            }
        }
        Ok(None)
    }

    /// The IP address a socket is bound to.
    #[cfg(target_os = "linux")]
    pub(crate) fn local_addr(fd: &std::os::fd::OwnedFd) -> Option<SocketAddr> {
        rustix::net::getsockname(fd).ok()?.try_into().ok()
    }

    /// The address of a socket's peer.
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn peer_addr(fd: &std::os::fd::OwnedFd) -> Option<SocketAddr> {
        rustix::net::getpeername(fd).ok()??.try_into().ok()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The connections the embedded broker accepts send without Nagle's algorithm.
    #[test]
    fn accepted_connections_have_nodelay() {
        let listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        start(&BrokerConfig::new(listen)).unwrap();
        let client = TcpStream::connect(listen).unwrap();
        let client_addr = client.local_addr().unwrap();
        let started = Instant::now();
        let accepted = loop {
            let found = nodelay::find_own_socket(|fd| {
                nodelay::local_addr(fd) == Some(listen) && nodelay::peer_addr(fd) == Some(client_addr)
            })
            .unwrap();
            if let Some(fd) = found {
                break fd;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the broker did not accept the connection"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            rustix::net::sockopt::tcp_nodelay(&accepted).unwrap(),
            "the broker's side of the connection has Nagle's algorithm on"
        );
    }
}
