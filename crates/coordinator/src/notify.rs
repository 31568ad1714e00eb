//! Optional MQTT notification: "operation needs you" on each device's notify topic.
//!
//! Topic: `vsigner/v1/devices/{deviceId}/notify`, QoS 1, payload
//! `{"operationId":"…","state":"AwaitingApproval"|"Ready"}`. The content is only a hint:
//! devices always re-read the operation through GraphQL.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::domain::{DeviceId, OperationId, OperationState};

/// The notify topic of a device.
pub fn notify_topic(device: &DeviceId) -> String {
    format!("vsigner/v1/devices/{device}/notify")
}

/// Publishes notifications to an MQTT broker.
#[derive(Clone)]
pub struct Notifier {
    client: AsyncClient,
}

impl Notifier {
    /// Connects to `mqtt://[user:password@]host[:port]` and drives the connection in a
    /// background task (reconnecting on errors).
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--mqtt is not a URL: {e}"))?;
        if parsed.scheme() != "mqtt" && parsed.scheme() != "tcp" {
            anyhow::bail!("--mqtt must be mqtt://host:port (TLS is not supported by the coordinator yet)");
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("--mqtt has no host"))?
            .to_owned();
        let port = parsed.port().unwrap_or(1883);
        let client_id = format!(
            "vsigner-coordinator-{}",
            hex::encode(crate::crypto::random_bytes::<6>())
        );
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        if !parsed.username().is_empty() {
            let password = parsed.password().unwrap_or("").to_owned();
            opts.set_credentials(parsed.username().to_owned(), password);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        tokio::spawn(async move {
            loop {
                if let Err(e) = eventloop.poll().await {
                    tracing::warn!(error = %e, "MQTT connection error; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Ok(Self { client })
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
                tracing::warn!(device = %d, error = %e, "MQTT notify dropped");
            }
        }
    }
}
