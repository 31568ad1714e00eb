//! Envelope cost and broker round trip.
//!
//! `cargo bench -p vsigner-transport`: seal+open of broadcast and p2p envelopes, and the
//! round trip of a 1 KiB p2p envelope A → B → A through the embedded broker on loopback
//! (criterion's median is the p50).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use round_based::{MessageDestination, Outgoing};
use vsigner_transport::envelope::{self, EnvelopeHeader, Expectation, Recipient};
use vsigner_transport::{broker, DeviceId, DeviceIdentity, Link, MqttConfig, SessionSpec};
use vsigner_tss::{ExecutionId, WireMessage};

fn device(name: &str) -> Arc<DeviceIdentity> {
    Arc::new(DeviceIdentity::generate(DeviceId::new(name).unwrap(), &mut OsRng))
}

fn seal_open(c: &mut Criterion) {
    let (a, b) = (device("bench-a"), device("bench-b"));
    let eid = ExecutionId::from_bytes([9; 32]);
    let participants = vec![
        (a.device_id().clone(), a.public_keys().clone()),
        (b.device_id().clone(), b.public_keys().clone()),
    ];
    let expect = Expectation {
        me: &b,
        execution_id: &eid,
        participants: &participants,
        my_parties: &[1],
        max_envelope: envelope::DEFAULT_MAX_ENVELOPE,
    };
    let mut group = c.benchmark_group("envelope seal+open");
    for (kind, size) in [("broadcast", 1024usize), ("p2p", 1024), ("p2p", 256 * 1024)] {
        let payload = vec![0x33u8; size];
        let recipient = if kind == "p2p" {
            Recipient::Party {
                device: b.device_id().clone(),
                index: 1,
            }
        } else {
            Recipient::Broadcast
        };
        let header = EnvelopeHeader {
            execution_id: eid,
            round: 1,
            seq: 0,
            sender: a.device_id().clone(),
            sender_party: 0,
            recipient,
        };
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new(kind, size), &payload, |bench, payload| {
            bench.iter(|| {
                let keys = (kind == "p2p").then(|| b.public_keys());
                let bytes = envelope::seal(&a, &header, payload, keys, &mut OsRng).unwrap();
                envelope::open(&bytes, &expect).unwrap()
            })
        });
    }
    group.finish();
}

/// The broker the round trips use: `VSIGNER_BENCH_MQTT_URL` (e.g. Mosquitto), or the
/// embedded one (started once per process).
fn bench_broker() -> (String, &'static str) {
    static EMBEDDED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match std::env::var("VSIGNER_BENCH_MQTT_URL") {
        Ok(url) => (url, "VSIGNER_BENCH_MQTT_URL"),
        Err(_) => {
            let url = EMBEDDED.get_or_init(|| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let addr = format!("127.0.0.1:{port}").parse().unwrap();
                broker::start(&broker::BrokerConfig::new(addr)).unwrap();
                format!("mqtt://{addr}")
            });
            (url.clone(), "embedded broker")
        }
    }
}

fn broker_round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, broker_name) = bench_broker();
    let name = format!("p2p envelope round trip via {broker_name} (1 KiB)");
    let (a, b) = (device("rtt-a"), device("rtt-b"));
    let (link_a, link_b) = rt.block_on(async {
        let link_a = Link::connect(a.clone(), MqttConfig::new(&url)).await.unwrap();
        let link_b = Link::connect(b.clone(), MqttConfig::new(&url)).await.unwrap();
        (link_a, link_b)
    });
    let participants = vec![
        (a.device_id().clone(), a.public_keys().clone()),
        (b.device_id().clone(), b.public_keys().clone()),
    ];
    let mut run = 0u64;
    // Each iteration is one run (a device accepts one message per sender and round): A
    // sends a 1 KiB p2p message to B, B answers, A receives. Opening the two sessions costs
    // microseconds; the rest is sealing, the broker hop twice and opening.
    c.bench_function(&name, |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&run.to_be_bytes());
                    let spec = SessionSpec {
                        execution_id: ExecutionId::from_bytes(id),
                        participants: participants.clone(),
                        idle_timeout: Duration::from_secs(30),
                    };
                    let start = Instant::now();
                    let (mut a_in, mut a_out) = link_a.open_session(spec.clone()).unwrap().into_delivery();
                    let (mut b_in, mut b_out) = link_b.open_session(spec).unwrap().into_delivery();
                    let msg = WireMessage {
                        execution_id: ExecutionId::from_bytes(id),
                        round: 0,
                        payload: vec![1u8; 1024],
                    };
                    a_out
                        .send(Outgoing {
                            recipient: MessageDestination::OneParty(1),
                            msg,
                        })
                        .await
                        .unwrap();
                    let incoming = b_in.next().await.unwrap().unwrap();
                    b_out
                        .send(Outgoing {
                            recipient: MessageDestination::OneParty(0),
                            msg: incoming.msg,
                        })
                        .await
                        .unwrap();
                    a_in.next().await.unwrap().unwrap();
                    total += start.elapsed();
                }
                total
            })
        })
    });
}

/// A round trip A → B → A of one small p2p message while a stranger (a client of the same
/// broker without any device key) floods B's inbox with 10,000 envelopes of runs B does not
/// know, published just before the round trip starts: from unknown senders (dropped before
/// any cryptography) or forged in A's name (one failed signature check each). Compare with
/// `broker_round_trip`: the difference is the delay the flood causes.
fn flood_round_trip(c: &mut Criterion) {
    const FLOOD: u32 = 10_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, broker_name) = bench_broker();
    let (a, b) = (device("flood-a"), device("flood-b"));
    let (link_a, link_b, stranger) = rt.block_on(async {
        let link_a = Link::connect(a.clone(), MqttConfig::new(&url)).await.unwrap();
        let link_b = Link::connect(b.clone(), MqttConfig::new(&url)).await.unwrap();
        link_b.learn_peers([(a.device_id().clone(), a.public_keys().clone())]);
        let parsed = url::Url::parse(&url).unwrap();
        let mut options = rumqttc::MqttOptions::new(
            "stranger",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(1883),
        );
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, FLOOD as usize + 16);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        (link_a, link_b, client)
    });
    let participants = vec![
        (a.device_id().clone(), a.public_keys().clone()),
        (b.device_id().clone(), b.public_keys().clone()),
    ];
    let inbox_b = format!("vsigner/v1/devices/{}/inbox", b.device_id().as_str());
    let forger = DeviceIdentity::generate(a.device_id().clone(), &mut OsRng);
    let flood = |kind: &str| -> Vec<Vec<u8>> {
        (0..FLOOD)
            .map(|i| {
                let mut id = [0xee; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                let stranger_id =
                    DeviceIdentity::generate(DeviceId::new(format!("nobody-{i}")).unwrap(), &mut OsRng);
                let from = if kind == "unknown senders" {
                    &stranger_id
                } else {
                    &forger
                };
                let header = EnvelopeHeader {
                    execution_id: ExecutionId::from_bytes(id),
                    round: 0,
                    seq: i,
                    sender: from.device_id().clone(),
                    sender_party: 1,
                    recipient: Recipient::Broadcast,
                };
                envelope::seal(from, &header, b"flood", None, &mut OsRng).unwrap()
            })
            .collect()
    };
    let mut run = 1u64 << 40;
    let mut group = c.benchmark_group(format!(
        "round trip via {broker_name} under a flood of {FLOOD} envelopes"
    ));
    group.sample_size(10);
    for kind in ["unknown senders", "forged in the peer's name"] {
        let envelopes = flood(kind);
        group.bench_function(kind, |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        for bytes in &envelopes {
                            stranger
                                .publish(&inbox_b, rumqttc::QoS::AtMostOnce, false, bytes.clone())
                                .await
                                .unwrap();
                        }
                        run += 1;
                        let mut id = [0u8; 32];
                        id[..8].copy_from_slice(&run.to_be_bytes());
                        let spec = SessionSpec {
                            execution_id: ExecutionId::from_bytes(id),
                            participants: participants.clone(),
                            idle_timeout: Duration::from_secs(30),
                        };
                        let start = Instant::now();
                        let (mut a_in, mut a_out) =
                            link_a.open_session(spec.clone()).unwrap().into_delivery();
                        let (mut b_in, mut b_out) = link_b.open_session(spec).unwrap().into_delivery();
                        let msg = WireMessage {
                            execution_id: ExecutionId::from_bytes(id),
                            round: 0,
                            payload: vec![1u8; 64],
                        };
                        a_out
                            .send(Outgoing {
                                recipient: MessageDestination::OneParty(1),
                                msg,
                            })
                            .await
                            .unwrap();
                        let incoming = b_in.next().await.unwrap().unwrap();
                        b_out
                            .send(Outgoing {
                                recipient: MessageDestination::OneParty(0),
                                msg: incoming.msg,
                            })
                            .await
                            .unwrap();
                        a_in.next().await.unwrap().unwrap();
                        total += start.elapsed();
                        // Let the rest of the flood drain before the next sample.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open, broker_round_trip, flood_round_trip);
criterion_main!(benches);
