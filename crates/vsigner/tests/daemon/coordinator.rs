//! The coordinator as an operator runs it: it says when its broker is down and when it is
//! back, `/readyz` says so too, and a service manager's SIGTERM stops it cleanly (exit
//! status 0).

use std::process::Command;
use std::time::{Duration, Instant};

use super::harness::*;

/// `GET url`: status and body.
fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = super::http_client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// Waits until `proc`'s output contains `needle`, failing after `within` with the output.
fn wait_for_line(proc: &Proc, needle: &str, within: Duration) {
    let start = Instant::now();
    while !proc.output.text().contains(needle) {
        assert!(
            start.elapsed() < within,
            "{} did not say {needle:?} within {within:?}:\n{}",
            proc.name,
            proc.output.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_coordinator_says_when_its_broker_is_down_and_back_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    // No broker on this port yet.
    let port = free_port();
    let (mut coordinator, url, _org) =
        start_coordinator(root.path(), &format!("mqtt://127.0.0.1:{port}"), &[]);
    wait_for_line(&coordinator, "MQTT connection error", Duration::from_secs(5));
    let readyz = format!("{url}/readyz");
    let (status, body) = get(&readyz);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("MQTT broker is not connected"), "{body}");

    // The broker comes up: the coordinator says it is connected, within seconds.
    let _broker = Proc::spawn(
        "broker",
        Command::new(bin()).args(["broker", "--listen", &format!("127.0.0.1:{port}")]),
    );
    wait_for_line(
        &coordinator,
        "MQTT broker reachable again",
        Duration::from_secs(10),
    );
    // One warning for the outage, not one per retry.
    let warnings = coordinator.output.text().matches("MQTT connection error").count();
    assert_eq!(warnings, 1, "{}", coordinator.output.text());
    let (status, body) = get(&readyz);
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let status = coordinator.terminate(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM ended the coordinator with {status}");
    assert!(
        coordinator.output.text().contains("SIGTERM"),
        "{}",
        coordinator.output.text()
    );
}
