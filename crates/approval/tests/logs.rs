//! What approvers log: `AlwaysApprove` warns at start and on every vote; no log line,
//! reason or `Debug` output ever contains the device's signing key or a URL's access code.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use url::Url;
use vsigner_approval::{
    AlwaysApprove, AnyApprover, ApiConfig, ApprovalConfig, Approver, DeviceKey, ModeConfig, Vote,
};

use common::*;

/// Records every event (all levels, all crates) as "LEVEL target field=value ...".
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(Level, String)>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut f = Fields(format!("span {}", span.metadata().name()));
        span.record(&mut f);
        self.0.lock().unwrap().push((*span.metadata().level(), f.0));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut f = Fields(String::new());
        values.record(&mut f);
        self.0.lock().unwrap().push((Level::TRACE, f.0));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(event.metadata().target().to_owned());
        event.record(&mut f);
        self.0.lock().unwrap().push((*event.metadata().level(), f.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn always_approve_warns_at_start_and_on_every_vote() {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        let a = AlwaysApprove::new();
        for r in [create_vault("v"), sign_tx("v", 100 * ONE_ETH)] {
            let d = a.decide(&r);
            assert!(d.is_approval(), "{d:?}");
        }
    });
    let warns: Vec<String> = capture
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == Level::WARN)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(warns.len(), 3, "{warns:?}");
    assert!(warns[0].contains("AlwaysApprove"), "{warns:?}");
    assert!(
        warns[1].contains("OperationCreateVault_v3") && warns[2].contains("OperationTransferOut_v3"),
        "{warns:?}"
    );
}

#[tokio::test]
async fn the_device_key_never_appears() {
    let secret = device_signing_key().to_bytes();
    let forms = [
        hex::encode(secret),
        hex::encode_upper(secret),
        B64.encode(secret),
        format!("{secret:?}"),
    ];

    // A webhook that answers 500 after reading the request, and one that is down.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")
                .await;
        }
    });
    let mut text = String::new();
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    for url in [
        format!("http://127.0.0.1:{port}/tx?code=s3cret"),
        format!("http://127.0.0.1:{}/tx?code=s3cret", free_port()),
    ] {
        let config = ApprovalConfig {
            mode: ModeConfig::Api(ApiConfig {
                transaction_url: Url::parse(&url).unwrap(),
                reshare_url: Url::parse(&url).unwrap(),
                reply_public_key: None,
                insecurities: vec![],
            }),
            timeout: Duration::from_secs(5),
            retries: 1,
        };
        let a: Box<dyn Approver> = Box::new(
            AnyApprover::from_config(&config, DeviceKey::new(DEVICE_ID, device_signing_key())).unwrap(),
        );
        let d = a.decide(&sign_tx("v", 1)).await;
        assert_eq!((d.vote, d.failed), (Vote::Reject, true), "{d:?}");
        let any = AnyApprover::from_config(&config, DeviceKey::new(DEVICE_ID, device_signing_key())).unwrap();
        writeln!(text, "{d:?}\n{config:?}\n{any:?}").unwrap();
    }
    for (_, line) in capture.0.lock().unwrap().iter() {
        writeln!(text, "{line}").unwrap();
    }
    assert!(
        text.contains("answered HTTP 500") && text.contains("unreachable"),
        "{text}"
    );
    assert!(
        text.contains("<redacted>"),
        "Debug of the approver shows the key as redacted: {text}"
    );
    assert!(!text.contains("s3cret"), "a URL's access code leaked:\n{text}");
    for f in &forms {
        assert!(
            !text.contains(f.as_str()),
            "the device secret key leaked:\n{text}"
        );
    }
}
