//! Two signer instances with one permit each (`MaxConcurrentOperations = 1`) and many
//! signatures at once: a device waiting for a permit must never leave the other waiting in a
//! run it started (each would hold its permit for a run the other cannot join, and both
//! would stall until the protocol's idle timeout). With several devices per instance in one
//! committee, they join a run together, in one place.

use std::time::Duration;

use serde_json::json;

use super::harness::*;
use super::{completed, KEYGEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_one_permit_each_never_wait_for_each_other() {
    let root = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    let webhook = start_webhook();
    let mut signers = Signer::one_device_each(
        root.path(),
        &org,
        &coordinator_url,
        &broker_url,
        &webhook,
        &["a", "b"],
        &[(0, 1), (1, 1)],
    );
    for s in &mut signers {
        // A stalled run would fail after 20 s instead of 180 s.
        s.tweak(|cfg| {
            cfg["MaxConcurrentOperations"] = json!(1);
            cfg["ProtocolIdleTimeoutSeconds"] = json!(20);
        });
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let ids = operator.wait_devices(&["a", "b"]).await;
    let keygen = operator.create_vault("together", "ed25519", 2, &ids).await;
    let op = operator.wait_final(&keygen, KEYGEN).await;
    completed(&op);
    // Requests at once: the two devices list, vote on and start them in different orders.
    all_complete(&operator, &op.vault_id, 12, &signers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_five_devices_join_a_run_in_one_place() {
    let root = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    let webhook = start_webhook();
    // Each instance runs five devices with one permit (`configure` sets it for several).
    let names = [["a1", "a2", "a3", "a4", "a5"], ["b1", "b2", "b3", "b4", "b5"]];
    let mut signers: Vec<Signer> = names
        .iter()
        .enumerate()
        .map(|(k, devices)| {
            Signer::configure(
                &format!("s{}", k + 1),
                root.path(),
                &org,
                &coordinator_url,
                &broker_url,
                &webhook,
                devices,
                None,
            )
        })
        .collect();
    for s in &mut signers {
        s.tweak(|cfg| cfg["ProtocolIdleTimeoutSeconds"] = json!(20));
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let all: Vec<&str> = names.iter().flatten().copied().collect();
    let ids = operator.wait_devices(&all).await;
    // Every signature needs all ten devices: five joined places per operation would exceed
    // the four an instance with one permit has.
    let keygen = operator.create_vault("all ten", "ed25519", 10, &ids).await;
    let op = operator.wait_final(&keygen, KEYGEN).await;
    completed(&op);
    all_complete(&operator, &op.vault_id, 8, &signers).await;
}

/// Requests `count` signatures in `vault` at once; each must complete (or the signers' logs
/// are shown).
async fn all_complete(operator: &Operator, vault: &str, count: usize, signers: &[Signer]) {
    let mut requests = Vec::new();
    for k in 0..count {
        let message = hex::encode(format!("at once {k}"));
        requests.push(
            operator
                .request_signature(vault, json!({"message": message}))
                .await,
        );
    }
    for id in &requests {
        let op = operator.wait_final(id, Duration::from_secs(180)).await;
        assert_eq!(
            op.state,
            "Completed",
            "signature {id}: {:?}\n{}",
            op.failure,
            signers
                .iter()
                .map(Signer::all_output)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
