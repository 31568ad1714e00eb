//! MQTT notifications on the real broker at VSIGNER_TEST_MQTT_URL.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

/// The next message; fails (instead of hanging) if none comes within a generous bound.
async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("no MQTT notification arrived")
        .expect("MQTT event loop ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_notified_on_mqtt() {
    let Ok(mqtt) = std::env::var("VSIGNER_TEST_MQTT_URL") else {
        eprintln!("skipping: VSIGNER_TEST_MQTT_URL is not set");
        return;
    };
    let url = url::Url::parse(&mqtt).unwrap();
    let db = Db::sqlite();
    let init = init_org(&db, "acme").await;
    let mut args = serve_args(&db);
    args.mqtt = Some(mqtt.clone());
    let c = Coord::start_with(args).await;
    let (operator, signer) = c.org(&init).await;
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
    ];

    // Subscribe as the devices would, before anything happens.
    let mut opts = MqttOptions::new(
        format!("test-{}", hex::encode(rand::random::<[u8; 4]>())),
        url.host_str().unwrap(),
        url.port().unwrap_or(1883),
    );
    if !url.username().is_empty() {
        opts.set_credentials(url.username(), url.password().unwrap_or(""));
    }
    let (client, mut events) = AsyncClient::new(opts, 64);
    for d in &devices {
        client
            .subscribe(format!("vsigner/v1/devices/{d}/notify"), QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    let (subacks_tx, mut subacks) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap();
                    let _ = tx.send((p.topic.clone(), v));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subacks_tx.send(());
                }
                Ok(_) => {}
                Err(e) => panic!("mqtt: {e}"),
            }
        }
    });
    for _ in &devices {
        subacks.recv().await.unwrap();
    }

    let op = create_vault(&operator, "ed25519", 2, &devices).await;
    let op_id = op["id"].as_str().unwrap().to_owned();
    let mut got = HashSet::new();
    while got.len() < 2 {
        let (topic, v) = next(&mut rx).await;
        if v["operationId"] == op_id.as_str() && v["state"] == "AwaitingApproval" {
            got.insert(topic);
        }
    }
    let expected: HashSet<String> = devices
        .iter()
        .map(|d| format!("vsigner/v1/devices/{d}/notify"))
        .collect();
    assert_eq!(got, expected);
    vote(&signer, &op_id, &devices[0], "approve").await;
    vote(&signer, &op_id, &devices[1], "approve").await;
    let mut got = HashSet::new();
    while got.len() < 2 {
        let (topic, v) = next(&mut rx).await;
        if v["operationId"] == op_id.as_str() && v["state"] == "Ready" {
            assert_eq!(v, json!({"operationId": op_id, "state": "Ready"}));
            got.insert(topic);
        }
    }
    assert_eq!(got, expected);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
    c.running.shutdown().await.unwrap();
}
