//! The secret of a known key share never appears in the output of the test run.
//!
//! `.ci/run` captures the whole test run's output into a log and then runs this test with
//! `VSIGNER_TEST_LOG` pointing at it. The known share is the committed fixture
//! `test-data/key-shares/secp256k1-2of3/party-0.vsgn`, which the keystore tests store, read,
//! tamper with and inspect. Every usual rendering of its secret scalar is searched for: hex
//! (lower and upper case), base64, and Rust's `Debug` of the byte array.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn known_secret() -> Vec<u8> {
    use cggmp24::generic_ec::Scalar;
    use vsigner_tss::ecdsa::Secp256k1;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/key-shares/secp256k1-2of3/party-0.vsgn");
    let bytes = std::fs::read(&path).unwrap();
    let dirty: cggmp24::key_share::DirtyIncompleteKeyShare<Secp256k1> =
        ciborium::from_reader(&bytes[8..]).unwrap();
    AsRef::<Scalar<Secp256k1>>::as_ref(&dirty.x)
        .to_be_bytes()
        .as_bytes()
        .to_vec()
}

fn renderings(secret: &[u8]) -> Vec<String> {
    use base64::Engine;
    let hex = hex::encode(secret);
    let debug = format!("{secret:?}");
    vec![
        hex.clone(),
        hex.to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        // Without the brackets, so that a partial listing is also caught.
        debug.trim_matches(|c| c == '[' || c == ']').to_owned(),
    ]
}

#[test]
fn known_share_secret_is_absent_from_the_test_log() {
    let Ok(log) = std::env::var("VSIGNER_TEST_LOG") else {
        eprintln!("skipped: VSIGNER_TEST_LOG is not set (.ci/run sets it to the captured test output)");
        return;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("cannot read {log}: {e}"));
    assert!(
        text.len() > 1000,
        "the log {log} is too short to be a test run's output"
    );
    for needle in renderings(&known_secret()) {
        assert!(
            !text.contains(&needle),
            "the known share's secret appears in {log}"
        );
    }
}

#[test]
fn the_renderings_would_be_found() {
    // The scan is not vacuous: a log that prints the secret is caught.
    let secret = known_secret();
    let leaky_log = format!("debug: share = {secret:?}\n");
    assert!(renderings(&secret).iter().any(|n| leaky_log.contains(n)));
    assert!(renderings(&secret)
        .iter()
        .any(|n| format!("x={}", hex::encode(&secret)).contains(n)));
}
