//! Attacks on the daemons by a hostile coordinator ([`crate::hostile`]) and whoever reads
//! the broker: each test performs the attack through real `vsigner run` processes, the
//! real coordinator and the embedded broker, and checks that no secret leaves a device.

use std::time::Duration;

use serde_json::Value;
use vsigner_transport::envelope::{self, Expectation, Recipient};
use vsigner_transport::{DeviceId, DeviceIdentity, DevicePublicKeys};

use crate::harness::*;
use crate::hostile::{replace_in_strings, HostileCoordinator};

/// Broker, coordinator and webhook, each its own process.
pub(crate) struct Net {
    pub(crate) root: tempfile::TempDir,
    pub(crate) broker_url: String,
    pub(crate) coordinator_url: String,
    pub(crate) org: Org,
    pub(crate) webhook: Webhook,
    pub(crate) operator: Operator,
    _broker: Proc,
    _coordinator: Proc,
}

impl Net {
    pub(crate) fn start() -> Net {
        let root = tempfile::tempdir().unwrap();
        let (broker, broker_url) = start_broker();
        let (coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
        let webhook = start_webhook();
        let operator = Operator::new(&coordinator_url, &org);
        Net {
            root,
            broker_url,
            coordinator_url,
            org,
            webhook,
            operator,
            _broker: broker,
            _coordinator: coordinator,
        }
    }

    /// A signer daemon with `devices`, talking to the coordinator at `coordinator_url` (the
    /// real one or a hostile proxy).
    pub(crate) fn signer(&self, name: &str, devices: &[&str], coordinator_url: &str) -> Signer {
        let mut s = Signer::configure(
            name,
            self.root.path(),
            &self.org,
            coordinator_url,
            &self.broker_url,
            &self.webhook,
            devices,
            None,
        );
        s.start();
        s
    }

    /// A signer daemon with `devices`, talking to the coordinator at `coordinator_url` and
    /// the broker at `broker_url` (real ones or hostile proxies), its configuration changed
    /// by `tweak` before it starts.
    pub(crate) fn signer_with(
        &self,
        name: &str,
        devices: &[&str],
        coordinator_url: &str,
        broker_url: &str,
        tweak: impl FnOnce(&mut Value),
    ) -> Signer {
        let mut s = Signer::configure(
            name,
            self.root.path(),
            &self.org,
            coordinator_url,
            broker_url,
            &self.webhook,
            devices,
            None,
        );
        s.tweak(tweak);
        s.start();
        s
    }

    /// The registered keys of a device.
    pub(crate) async fn keys_of(&self, device: &str) -> DevicePublicKeys {
        let d = self
            .operator
            .client
            .devices()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == device)
            .unwrap();
        DevicePublicKeys::from_hex(&d.identity_signing_key, &d.identity_encryption_key).unwrap()
    }
}

/// A client of the broker that reads what devices are sent (the broker, or anyone the
/// broker lets subscribe, sees every envelope).
struct Eavesdropper {
    captured: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Eavesdropper {
    async fn on(broker_url: &str, topic: String) -> Eavesdropper {
        let url = url::Url::parse(broker_url).unwrap();
        let mut options = rumqttc::MqttOptions::new(
            format!("eavesdropper-{}", std::process::id()),
            url.host_str().unwrap(),
            url.port().unwrap(),
        );
        options.set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1024);
        let captured: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let store = captured.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        client
                            .try_subscribe(topic.clone(), rumqttc::QoS::AtLeastOnce)
                            .unwrap();
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        ready.take().map(|r| r.send(()));
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        store.lock().unwrap().push(p.payload.to_vec());
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
        Eavesdropper { captured, task }
    }

    fn envelopes(&self) -> Vec<Vec<u8>> {
        self.captured.lock().unwrap().clone()
    }
}

impl Drop for Eavesdropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Finding 1 of [trust-identity]: a reshare adds a device the dealers have never run with;
/// the coordinator shows the dealers that device's real signing key but an encryption key
/// of its own, and reads their sub-shares off the broker. The dealers must refuse before
/// any sub-share is sent, naming the device whose record does not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_swaps_a_new_devices_encryption_key_gets_no_sub_share() {
    let net = Net::start();
    // The dealers (a, b) hear from a lying coordinator; the new device c from the real one.
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    let s1 = net.signer("s1", &["a"], &hostile.url);
    let s2 = net.signer("s2", &["b"], &hostile.url);
    let _s3 = net.signer("s3", &["c"], &net.coordinator_url);
    let ids = net.operator.wait_devices(&["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let keygen = net
        .operator
        .create_vault("dealers", "ed25519", 2, &[a.clone(), b.clone()])
        .await;
    let op = net.operator.wait_final(&keygen, Duration::from_secs(120)).await;
    assert_eq!(op.state, "Completed", "keygen: {:?}", op.failure);
    let vault = op.vault_id.clone();

    // The attacker's key for c, and what the coordinator now tells a and b about c.
    let impostor = DeviceIdentity::generate(DeviceId::new(c.clone()).unwrap(), &mut rand_core::OsRng);
    let c_keys = net.keys_of(&c).await;
    let (real, fake) = (c_keys.encryption_hex(), impostor.public_keys().encryption_hex());
    hostile.lie(move |_asked: &Value, answer: &mut Value| replace_in_strings(answer, &real, &fake));
    let eavesdropper = Eavesdropper::on(&net.broker_url, format!("vsigner/v1/devices/{c}/inbox")).await;

    let reshare = net
        .operator
        .request_reshare(&vault, 2, &[a.clone(), b.clone(), c.clone()])
        .await;
    let op = net.operator.wait_final(&reshare, Duration::from_secs(120)).await;
    // Give late envelopes a moment to reach the eavesdropper.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What the attacker can read of what was sent to c.
    let participants = [
        (DeviceId::new(a.clone()).unwrap(), net.keys_of(&a).await),
        (DeviceId::new(b.clone()).unwrap(), net.keys_of(&b).await),
        (DeviceId::new(c.clone()).unwrap(), impostor.public_keys().clone()),
    ];
    let mut read = 0;
    let captured = eavesdropper.envelopes();
    for bytes in &captured {
        let Ok(parsed) = envelope::parse(bytes, envelope::DEFAULT_MAX_ENVELOPE) else {
            continue;
        };
        let eid = parsed.header.execution_id;
        let p2p = matches!(parsed.header.recipient, Recipient::Party { .. });
        let expect = Expectation {
            me: &impostor,
            execution_id: &eid,
            participants: &participants,
            // Every party: only the encryption can stop the impostor.
            my_parties: &[0, 1, 2],
            max_envelope: envelope::DEFAULT_MAX_ENVELOPE,
        };
        if p2p && envelope::accept(parsed, &expect).is_ok() {
            read += 1;
        }
    }
    assert_eq!(
        read,
        0,
        "the coordinator decrypted {read} of the {} envelopes sent to the new device (sub-shares of the key); the reshare ended {} ({:?})",
        captured.len(),
        op.state,
        op.failure
    );
    // The dealers refused, naming c, and the vault keeps its key with a and b: when they
    // voted (a device list read since the lie shows c's record altered, which does not
    // verify) or before they ran (a list read before the lie, reused for a few seconds,
    // shows c's real keys, which are not the committee's).
    assert_ne!(op.state, "Completed");
    for dealer in [&s1, &s2] {
        let log = dealer.all_output();
        assert!(
            log.contains(&format!("the record of device {c} does not verify"))
                || log.contains(&format!(
                    "the identity keys given for committee member {c} are not the ones registered for it"
                )),
            "dealer {} must refuse, naming the device whose keys were swapped:\n{log}",
            dealer.name
        );
    }
    let after = net.operator.client.vault(&vault).await.unwrap();
    assert_eq!(after.key_generation, 0);
}
