//! Shared helpers: brokers, devices, links, sessions.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::Rng;
use rand_core::OsRng;
use vsigner_transport::{broker, DeviceId, DeviceIdentity, Link, MqttConfig, SessionSpec};
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag};

/// `test-data/` at the workspace root.
pub(crate) fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The embedded broker of this test binary (rumqttd cannot be stopped: one per process).
pub(crate) fn embedded_broker() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        broker::start(&broker::BrokerConfig::new(addr)).unwrap();
        format!("mqtt://{addr}")
    })
    .clone()
}

/// The real Mosquitto, when the environment provides one.
pub(crate) fn mosquitto() -> Option<String> {
    match std::env::var("VSIGNER_TEST_MQTT_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED: VSIGNER_TEST_MQTT_URL is not set (bash .ci/run sets it)");
            None
        }
    }
}

/// `n` fresh device identities with ids unique to this test run.
pub(crate) fn devices(n: usize, tag: &str) -> Vec<Arc<DeviceIdentity>> {
    let run: u32 = rand::thread_rng().gen();
    (0..n)
        .map(|i| {
            let id = DeviceId::new(format!("{tag}-{run:08x}-{i}")).unwrap();
            Arc::new(DeviceIdentity::generate(id, &mut OsRng))
        })
        .collect()
}

pub(crate) fn config(url: &str) -> MqttConfig {
    let mut config = MqttConfig::new(url);
    config.connect_timeout = Duration::from_secs(10);
    config
}

/// Connects every device to the broker at `url`.
pub(crate) async fn connect(url: &str, devices: &[Arc<DeviceIdentity>]) -> Vec<Link> {
    let mut links = Vec::new();
    for device in devices {
        links.push(Link::connect(device.clone(), config(url)).await.unwrap());
    }
    links
}

/// A fresh execution id for `protocol` among `devices`.
pub(crate) fn eid(protocol: ProtocolTag, devices: &[Arc<DeviceIdentity>]) -> ExecutionId {
    let ids: Vec<&str> = devices.iter().map(|d| d.device_id().as_str()).collect();
    let nonce: [u8; 16] = rand::thread_rng().gen();
    ExecutionId::derive(&ExecutionContext {
        protocol,
        operation_id: "operation",
        vault_id: "vault",
        participants: &ids,
        nonce: &nonce,
    })
}

/// The session spec every participant builds for a run among `devices` (in that order).
pub(crate) fn spec(eid: ExecutionId, devices: &[Arc<DeviceIdentity>], idle: Duration) -> SessionSpec {
    SessionSpec {
        execution_id: eid,
        participants: devices
            .iter()
            .map(|d| (d.device_id().clone(), d.public_keys().clone()))
            .collect(),
        idle_timeout: idle,
    }
}

/// A raw MQTT client playing the hostile broker: it can publish any bytes to any inbox and
/// record what devices send.
pub(crate) struct Attacker {
    pub(crate) client: rumqttc::AsyncClient,
    pub(crate) captured: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Attacker {
    pub(crate) async fn connect(url: &str, subscribe: &[String]) -> Attacker {
        let url = url::Url::parse(url).unwrap();
        let id = format!("attacker-{:08x}", rand::thread_rng().gen::<u32>());
        let mut options = rumqttc::MqttOptions::new(id, url.host_str().unwrap(), url.port().unwrap_or(1883));
        options.set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1024);
        let (tx, captured) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let topics = subscribe.to_vec();
        let sub_client = client.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        if topics.is_empty() {
                            ready.take().map(|r| r.send(()));
                        }
                        for t in &topics {
                            sub_client
                                .try_subscribe(t.clone(), rumqttc::QoS::AtLeastOnce)
                                .unwrap();
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        ready.take().map(|r| r.send(()));
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .unwrap()
            .unwrap();
        Attacker {
            client,
            captured,
            task,
        }
    }

    pub(crate) async fn send(&self, topic: &str, bytes: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `cond` holds (polling), failing the test after 20 s.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
