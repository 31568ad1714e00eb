//! A broker that drops messages: a TCP proxy in front of the real broker that reads the
//! MQTT 3.1.1 packets devices publish and drops some of them, as a broker (or anyone on the
//! path) can. It sees only what the broker sees: the topic (whose inbox) and the envelope's
//! clear header (execution id, round); the content is end-to-end encrypted. A dropped QoS 1
//! publish is acknowledged to its sender, as if the broker had taken it.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vsigner_transport::envelope;

/// Decides, for one published envelope (topic, envelope round), whether to drop it.
pub(crate) type Dropper = Arc<Mutex<dyn FnMut(&str, u16) -> bool + Send>>;

/// The proxy; dropping it stops accepting connections.
pub(crate) struct HostileBroker {
    /// `mqtt://127.0.0.1:PORT`.
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileBroker {
    /// A proxy to the broker at `upstream` (`host:port`) that drops what `drop` says.
    pub(crate) async fn start(upstream: String, drop: Dropper) -> HostileBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("mqtt://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, drop) = (upstream.clone(), drop.clone());
                tokio::spawn(async move {
                    if let Ok(broker) = TcpStream::connect(&upstream).await {
                        relay(client, broker, drop).await;
                    }
                });
            }
        });
        HostileBroker { url, task }
    }
}

/// One MQTT control packet: the first byte, the encoded remaining length, the rest.
async fn read_packet(r: &mut (impl AsyncReadExt + Unpin)) -> Option<(u8, Vec<u8>)> {
    let first = r.read_u8().await.ok()?;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = r.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

fn encode(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

async fn relay(client: TcpStream, broker: TcpStream, drop: Dropper) {
    let (mut client_r, client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    let client_w = Arc::new(tokio::sync::Mutex::new(client_w));
    let to_client = client_w.clone();
    let down = tokio::spawn(async move {
        while let Some((first, body)) = read_packet(&mut broker_r).await {
            if to_client
                .lock()
                .await
                .write_all(&encode(first, &body))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    while let Some((first, body)) = read_packet(&mut client_r).await {
        if first >> 4 == 3 {
            // PUBLISH: topic, packet id (QoS > 0), payload.
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let topic = String::from_utf8_lossy(&body[2..2 + topic_len]).into_owned();
            let mut at = 2 + topic_len;
            let packet_id = (qos > 0).then(|| [body[at], body[at + 1]]);
            if qos > 0 {
                at += 2;
            }
            let round = envelope::parse(&body[at..], envelope::DEFAULT_MAX_ENVELOPE)
                .ok()
                .map(|e| e.header.round);
            if let Some(round) = round {
                let dropped = (drop.lock().unwrap())(&topic, round);
                if dropped {
                    if let Some(id) = packet_id {
                        // PUBACK, as if the broker had the message.
                        let ack = encode(0x40, &id);
                        if client_w.lock().await.write_all(&ack).await.is_err() {
                            break;
                        }
                    }
                    continue;
                }
            }
        }
        if broker_w.write_all(&encode(first, &body)).await.is_err() {
            break;
        }
    }
    down.abort();
}
