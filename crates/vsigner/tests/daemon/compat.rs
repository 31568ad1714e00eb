//! A drop-in for io.finnet's Virtual Signer, through the real daemons: a configuration file
//! with io.finnet's keys, a policy contract written to io.finnet's published structs on
//! anvil, and the broker over secure WebSockets (io.finnet's endpoint is `wss://…:8084`),
//! the coordinator's notifications included. And an approver outage delays an operation
//! instead of rejecting it.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../../../approval/tests/common/evm.rs"]
mod evm;
#[path = "../../../transport/tests/transport/private_broker.rs"]
mod private_broker;

use crate::harness::*;
use crate::{completed, verify_ed25519, KEYGEN, SIGN};

/// io.finnet's keys (`InitialDevice`, `Environment`, `BindingNetworkName`, `GraphQLService`,
/// a `wss://` `MQTTEndpoint` with `MQTTCACert`, `SmartContract` approvals) in place of the
/// harness's vsigner-style ones.
fn iofinnet_style(
    cfg: &mut Value,
    device: &str,
    coordinator_url: &str,
    wss_url: &str,
    ca: &str,
    rpc: &str,
    contract: &str,
) {
    let o = cfg.as_object_mut().unwrap();
    o.remove("InitialDevices");
    o.insert("InitialDevice".into(), json!(device));
    o.insert("Environment".into(), json!("production"));
    o.insert("BindingNetworkName".into(), json!("eth0"));
    o.insert(
        "GraphQLService".into(),
        json!(format!("{coordinator_url}/graphql")),
    );
    o.insert("MQTTEndpoint".into(), json!(wss_url));
    o.insert("MQTTCACert".into(), json!(ca));
    o.insert("ApprovalMode".into(), json!("SmartContract"));
    o.insert("ApprovalNodeRPCAddress".into(), json!(rpc));
    o.insert("ApprovalSmartContractAddress".into(), json!(contract));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iofinnet_configuration_published_contract_and_wss() {
    let Some((anvil_bin, solcjs)) = evm::tools() else {
        return;
    };
    if !private_broker::have("mosquitto") || !private_broker::have("openssl") {
        println!("SKIPPED: mosquitto or openssl missing (bash .ci/run installs mosquitto)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();

    // The broker: secure WebSockets only for vsigner (Mosquitto 2.0.11 needs one plain
    // listener besides WebSocket ones; nothing here uses it).
    private_broker::certificates(dir);
    let (plain, wss) = (free_port(), free_port());
    let d = dir.display();
    let _broker = private_broker::Mosquitto::start(
        dir,
        &format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nuser root\nlog_dest none\n\
             listener {plain} 127.0.0.1\n\
             listener {wss} 127.0.0.1\nprotocol websockets\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        ),
        &[plain, wss],
    );
    let wss_url = format!("wss://127.0.0.1:{wss}/mqtt");
    let ca = dir.join("ca.pem").display().to_string();

    // The policy contract, written to io.finnet's published structs.
    let bins = evm::compile(
        &solcjs,
        &[repo_root().join("crates/approval/tests/contracts/PublishedLayout.sol")],
    );
    let anvil = evm::start_anvil(&anvil_bin).await;
    let contract = evm::deploy(&anvil.url, &bins["PublishedLayout"], &[]).await;

    let (coordinator, coordinator_url, org) = start_coordinator(dir, &wss_url, &["--mqtt-ca-cert", &ca]);
    // An io.finnet configuration carries its webhook keys too; SmartContract mode decides.
    let webhook = start_webhook();
    let mut signers: Vec<Signer> = ["a", "b"]
        .iter()
        .map(|name| {
            let s = Signer::configure(
                name,
                dir,
                &org,
                &coordinator_url,
                &wss_url,
                &webhook,
                &[name],
                None,
            );
            s.tweak(|cfg| iofinnet_style(cfg, name, &coordinator_url, &wss_url, &ca, &anvil.url, &contract));
            s
        })
        .collect();
    for s in &mut signers {
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let ids = operator.wait_devices(&["a", "b"]).await;

    // Keygen (NewThreshold 2: approved), then a message the policy approves and one it
    // rejects ("do fail the test"), which stays unsigned.
    let keygen = operator.create_vault("treasury", "ed25519", 2, &ids).await;
    let op = operator.wait_final(&keygen, KEYGEN).await;
    completed(&op);
    let (vault, key) = (
        op.vault_id.clone(),
        op.result.as_ref().unwrap().public_key.clone().unwrap(),
    );
    let message = b"pay the rent";
    let op = operator
        .signed(&vault, json!({"message": hex::encode(message)}))
        .await;
    verify_ed25519(&key, message, &op);
    let refused = operator
        .request_signature(&vault, json!({"message": hex::encode(b"do fail the test")}))
        .await;
    let op = operator.wait_final(&refused, SIGN).await;
    assert_eq!(op.state, "Rejected", "{:?}", op.failure);
    assert!(op.result.is_none(), "a rejected message has no signature");

    // The coordinator's notifications crossed the wss:// broker: the daemons were woken,
    // not only polling (its log shows no MQTT connection error).
    let out = coordinator.output.text();
    assert!(!out.contains("MQTT connection error"), "{out}");

    // GET /version: io.finnet's fields, with the values of the io.finnet keys.
    let v: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/version", signers[0].port))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["environment"], "production", "{v}");
    assert_eq!(v["bindingNetworkName"], "eth0");
    assert_eq!(v["initialDevice"], "a");
    assert_eq!(v["approvalMode"], "SmartContract");
    assert_eq!(v["MQTTEndpoint"], wss_url);
    assert_eq!(v["GraphQLService"], format!("{coordinator_url}/graphql"));
    assert_eq!(
        v["ApprovalSmartContractAddress"].as_str().unwrap().to_lowercase(),
        contract.to_lowercase()
    );
    assert_eq!(v["devicesInBoth"], ids[0]);
    assert_eq!(v["AuthClientSecret"], "set");
}

/// The approval webhook is down when a vault is created: the devices cast no vote and ask
/// again until it answers (before [compat] a timeout or refused connection was a final
/// Reject vote, and one unreachable approver killed the vault creation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_outage_delays_and_does_not_reject() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(dir, &broker_url, &[]);

    // The webhook's reply key and port; it answers once, to show its key, then is down.
    let key = dir.join("reply-key.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success(), "openssl genpkey");
    let port = free_port();
    let webhook = start_webhook_on(port, Some(&key));
    let mut signers: Vec<Signer> = ["a", "b"]
        .iter()
        .map(|name| {
            let s = Signer::configure(
                name,
                dir,
                &org,
                &coordinator_url,
                &broker_url,
                &webhook,
                &[name],
                None,
            );
            s.tweak(|cfg| cfg["ApprovalTimeoutSeconds"] = json!(1));
            s
        })
        .collect();
    drop(webhook);
    for s in &mut signers {
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let ids = operator.wait_devices(&["a", "b"]).await;
    let keygen = operator.create_vault("treasury", "ed25519", 2, &ids).await;

    // While the webhook is down: no vote, the operation waits, the retries are counted.
    let start = Instant::now();
    let retries = loop {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", signers[0].prometheus_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let n: f64 = text
            .lines()
            .find(|l| l.starts_with("vsigner_approval_retries_total{mode=\"API\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if n >= 2.0 || start.elapsed() > Duration::from_secs(60) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(retries >= 2.0, "the approval was not asked again: {retries}");
    let votes = operator
        .gql(
            "query($id: ID!) { operation(id: $id) { state votes { deviceId vote } } }",
            json!({"id": keygen}),
        )
        .await;
    assert_eq!(votes["operation"]["state"], "AwaitingApproval", "{votes}");
    assert_eq!(
        votes["operation"]["votes"],
        json!([]),
        "no vote without an answer: {votes}"
    );

    // The webhook comes back (same key): the devices' next attempts get answers, and the
    // vault is created.
    let _webhook = start_webhook_on(port, Some(&key));
    let op = operator.wait_final(&keygen, KEYGEN).await;
    completed(&op);
}
