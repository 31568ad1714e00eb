//! The Prometheus exporter: install the recorder (once, in this test binary), serve `/metrics`
//! on a free port, record through the metric functions, scrape over HTTP.

// Tests may unwrap (see clippy.toml); helpers outside #[test] fns too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vsigner_approval::{ApprovalMode, Decision, Vote};
use vsigner_signer::metrics::{self, OperationKind, Outcome, Protocol};

fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map(|l| l[series.len()..].trim())
}

#[tokio::test]
async fn records_and_scrapes() {
    let handle = metrics::install().unwrap();
    assert!(metrics::install().is_err(), "a second recorder must be refused");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve(listener, handle, async move {
        let _ = stopped.await;
    }));

    metrics::operation_finished(OperationKind::Sign, Outcome::Succeeded);
    metrics::operation_finished(OperationKind::Sign, Outcome::Succeeded);
    metrics::operation_finished(OperationKind::Keygen, Outcome::Failed);
    metrics::protocol_duration(Protocol::EcdsaSign, Duration::from_millis(300));
    metrics::protocol_duration(Protocol::EcdsaSign, Duration::from_secs(2));
    metrics::prime_pool_sets(3);
    metrics::presignature_pool("vault-1", 7);
    metrics::approval_latency(
        &Decision::answered(ApprovalMode::Api, Vote::Approve, ""),
        Duration::from_millis(40),
    );
    let failed = Decision::unavailable(ApprovalMode::Api, "timeout");
    metrics::approval_latency(&failed, Duration::from_secs(10));
    metrics::approval_retry(&failed);
    metrics::mqtt_reconnect("dev-1");
    metrics::devices(2);

    let resp = http_client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();

    assert_eq!(
        sample(
            &text,
            r#"vsigner_operations_total{kind="sign",outcome="succeeded"}"#
        ),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"vsigner_operations_total{kind="keygen",outcome="failed"}"#
        ),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            r#"vsigner_protocol_duration_seconds_count{protocol="ecdsa_sign"}"#
        ),
        Some("2")
    );
    assert_eq!(
        sample(
            &text,
            r#"vsigner_protocol_duration_seconds_sum{protocol="ecdsa_sign"}"#
        ),
        Some("2.3")
    );
    assert_eq!(
        sample(
            &text,
            r#"vsigner_protocol_duration_seconds_bucket{protocol="ecdsa_sign",le="0.5"}"#
        ),
        Some("1"),
        "a histogram with the configured buckets: {text}"
    );
    assert_eq!(sample(&text, "vsigner_prime_pool_sets"), Some("3"));
    assert_eq!(
        sample(&text, r#"vsigner_presignature_pool{vault="vault-1"}"#),
        Some("7")
    );
    assert_eq!(
        sample(
            &text,
            r#"vsigner_approval_latency_seconds_count{mode="API",vote="approve"}"#
        ),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            r#"vsigner_approval_latency_seconds_count{mode="API",vote="failed"}"#
        ),
        Some("1")
    );
    assert_eq!(
        sample(&text, r#"vsigner_mqtt_reconnects_total{device="dev-1"}"#),
        Some("1")
    );
    assert_eq!(
        sample(&text, r#"vsigner_approval_retries_total{mode="API"}"#),
        Some("1")
    );
    assert_eq!(sample(&text, "vsigner_devices"), Some("2"));
    for name in metrics::ALL {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}: {text}"
        );
    }

    // Counters add up across scrapes.
    metrics::operation_finished(OperationKind::Sign, Outcome::Succeeded);
    let text = http_client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &text,
            r#"vsigner_operations_total{kind="sign",outcome="succeeded"}"#
        ),
        Some("3")
    );

    let resp = http_client()
        .get(url.replace("/metrics", "/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
