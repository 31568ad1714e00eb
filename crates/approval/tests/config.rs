//! `ApprovalConfig::from_values`: every bad value is refused with its key's name.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::SigningKey;
use vsigner_approval::{ApprovalConfig, ApprovalMode, ApprovalValues, ConfigError, ModeConfig};

fn pem_hex() -> String {
    let pem = SigningKey::from_bytes(&[3; 32])
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    hex::encode(pem.as_bytes())
}

fn api() -> ApprovalValues {
    ApprovalValues {
        approval_mode: Some("API".into()),
        external_transaction_approval_url: Some("https://approver.example/tx".into()),
        external_reshare_approval_url: Some("https://approver.example/reshare".into()),
        approval_http_public_key_hex: Some(pem_hex()),
        ..Default::default()
    }
}

fn sc() -> ApprovalValues {
    ApprovalValues {
        approval_mode: Some("SmartContract".into()),
        approval_node_rpc_address: Some("http://127.0.0.1:8545".into()),
        approval_smart_contract_address: Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
        ..Default::default()
    }
}

fn err(v: &ApprovalValues) -> ConfigError {
    ApprovalConfig::from_values(v).unwrap_err()
}

fn assert_names(v: ApprovalValues, key: &str) {
    let e = err(&v);
    assert_eq!(e.key(), key, "{e}");
    assert!(e.to_string().starts_with(key), "message should name {key}: {e}");
}

#[test]
fn good_values_parse() {
    let c = ApprovalConfig::from_values(&api()).unwrap();
    assert_eq!(c.approval_mode(), ApprovalMode::Api);
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.retries, 2);
    let ModeConfig::Api(a) = &c.mode else { panic!() };
    assert_eq!(
        a.reply_public_key,
        Some(SigningKey::from_bytes(&[3; 32]).verifying_key())
    );
    assert_eq!(a.transaction_url.as_str(), "https://approver.example/tx");

    // Unsigned replies only when the operator accepts them, and then they are listed.
    let unsigned = ApprovalValues {
        approval_timeout_seconds: Some("0.3".into()),
        approval_retries: Some("0".into()),
        approval_http_public_key_hex: Some(String::new()), // empty: not set
        ..api()
    };
    assert_names(unsigned.clone(), "ApprovalHTTPPublicKeyHex");
    let c = ApprovalConfig::from_values(&ApprovalValues {
        approval_accept_insecure: Some("true".into()),
        ..unsigned
    })
    .unwrap();
    assert_eq!((c.timeout, c.retries), (Duration::from_millis(300), 0));
    let ModeConfig::Api(a) = &c.mode else { panic!() };
    assert_eq!(a.reply_public_key, None);
    assert_eq!(
        a.insecurities,
        vec!["replies are unsigned (ApprovalHTTPPublicKeyHex is not set)".to_owned()]
    );

    let c = ApprovalConfig::from_values(&sc()).unwrap();
    let ModeConfig::SmartContract(s) = &c.mode else {
        panic!()
    };
    assert_eq!(
        s.address.to_checksum(None),
        "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    );
    // All lowercase: no checksum to check.
    let lower = ApprovalValues {
        approval_smart_contract_address: Some("0x5fbdb2315678afecb367f032d93f642f64180aa3".into()),
        ..sc()
    };
    assert!(ApprovalConfig::from_values(&lower).is_ok());

    let always = ApprovalValues {
        approval_mode: Some("AlwaysApprove".into()),
        ..Default::default()
    };
    assert_eq!(
        ApprovalConfig::from_values(&always).unwrap().mode,
        ModeConfig::AlwaysApprove
    );
}

#[test]
fn mode_is_required_and_checked() {
    assert_names(ApprovalValues::default(), "ApprovalMode");
    assert_names(
        ApprovalValues {
            approval_mode: Some("Api".into()),
            ..api()
        },
        "ApprovalMode",
    );
}

#[test]
fn api_urls_are_required_and_checked() {
    assert_names(
        ApprovalValues {
            external_transaction_approval_url: None,
            ..api()
        },
        "ExternalTransactionApprovalURL",
    );
    assert_names(
        ApprovalValues {
            external_reshare_approval_url: Some("  ".into()),
            ..api()
        },
        "ExternalReshareApprovalURL",
    );
    assert_names(
        ApprovalValues {
            external_transaction_approval_url: Some("not a url".into()),
            ..api()
        },
        "ExternalTransactionApprovalURL",
    );
    assert_names(
        ApprovalValues {
            external_reshare_approval_url: Some("ftp://approver.example/x".into()),
            ..api()
        },
        "ExternalReshareApprovalURL",
    );
    let e = err(&ApprovalValues {
        external_transaction_approval_url: Some("https://user:pw@approver.example/x".into()),
        ..api()
    });
    assert_eq!(e.key(), "ExternalTransactionApprovalURL");
    assert!(!e.to_string().contains("pw"), "{e}");
}

#[test]
fn public_key_is_checked() {
    let key = "ApprovalHTTPPublicKeyHex";
    assert_names(
        ApprovalValues {
            approval_http_public_key_hex: Some("zz".into()),
            ..api()
        },
        key,
    );
    // The PEM itself instead of its hex.
    let pem = String::from_utf8(hex::decode(pem_hex()).unwrap()).unwrap();
    let e = err(&ApprovalValues {
        approval_http_public_key_hex: Some(pem),
        ..api()
    });
    assert_eq!(e.key(), key);
    assert!(e.to_string().contains("hex encoding of the PEM text"), "{e}");
    // Hex, but not of a PEM.
    assert_names(
        ApprovalValues {
            approval_http_public_key_hex: Some(hex::encode("hello")),
            ..api()
        },
        key,
    );
    // A PEM, but of an RSA/other key: an arbitrary SubjectPublicKeyInfo that is not Ed25519.
    let p256_spki = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7ZXSW9CQ8w2VbjvLptZQOJoo6QdA\nwMfhSdxYZPMwvGJcJjnaYX2dGrCRs6vwESI27ISmLtAqDuUJu501AlVuOg==\n-----END PUBLIC KEY-----\n";
    assert_names(
        ApprovalValues {
            approval_http_public_key_hex: Some(hex::encode(p256_spki)),
            ..api()
        },
        key,
    );
    // Raw 32-byte key hex instead of the PEM's hex.
    assert_names(
        ApprovalValues {
            approval_http_public_key_hex: Some(hex::encode([3u8; 32])),
            ..api()
        },
        key,
    );
}

#[test]
fn smart_contract_values_are_required_and_checked() {
    assert_names(
        ApprovalValues {
            approval_node_rpc_address: None,
            ..sc()
        },
        "ApprovalNodeRPCAddress",
    );
    assert_names(
        ApprovalValues {
            approval_node_rpc_address: Some("localhost:8545".into()),
            ..sc()
        },
        "ApprovalNodeRPCAddress",
    );
    assert_names(
        ApprovalValues {
            approval_smart_contract_address: None,
            ..sc()
        },
        "ApprovalSmartContractAddress",
    );
    for bad in [
        "5FbDB2315678afecb367f032d93F642f64180aa3",   // no 0x
        "0x5FbDB2315678afecb367f032d93F642f64180aa",  // 39 digits
        "0x5FbDB2315678afecb367f032d93F642f64180aaZ", // not hex
        "0x5FbDB2315678afecb367f032d93F642f64180aA3", // EIP-55 checksum wrong
    ] {
        assert_names(
            ApprovalValues {
                approval_smart_contract_address: Some(bad.into()),
                ..sc()
            },
            "ApprovalSmartContractAddress",
        );
    }
}

#[test]
fn timeout_and_retries_are_checked() {
    for bad in ["0", "-1", "ten", "100000", "NaN"] {
        assert_names(
            ApprovalValues {
                approval_timeout_seconds: Some(bad.into()),
                ..sc()
            },
            "ApprovalTimeoutSeconds",
        );
    }
    for bad in ["-1", "11", "two"] {
        assert_names(
            ApprovalValues {
                approval_retries: Some(bad.into()),
                ..sc()
            },
            "ApprovalRetries",
        );
    }
}
