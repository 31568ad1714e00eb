//! `vsigner keystore rekey` as an operator uses it on a signer's keystore: the new
//! passphrase comes from the environment, the old one stops opening the keystore, the new one
//! opens it with every record intact; then a key file replaces the passphrase.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use super::harness::*;

/// Runs `vsigner ARGS` with the signer's secrets for `passphrase` in the environment.
fn vsigner(args: &[&str], passphrase: Option<&str>, extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("VSIGNER_AuthClientSecret", "signer-client-secret-for-the-test")
        .env("VSIGNER_SignerAPIToken", API_TOKEN)
        .env_remove("VSIGNER_KeystorePassphrase")
        .env_remove("VSIGNER_NEW_KEYSTORE_PASSPHRASE")
        .envs(extra.iter().copied());
    if let Some(p) = passphrase {
        cmd.env("VSIGNER_KeystorePassphrase", p);
    }
    cmd.output().unwrap()
}

/// Imports prime set `skip` of the committed test pool.
fn import_one_prime_set(config: &Path, skip: usize, passphrase: Option<&str>) -> Output {
    let pool = repo_root().join("test-data/primes/public-test-pool.json");
    vsigner(
        &[
            "primes",
            "import",
            "--config",
            config.to_str().unwrap(),
            "--from",
            pool.to_str().unwrap(),
            "--skip",
            &skip.to_string(),
            "--count",
            "1",
        ],
        passphrase,
        &[],
    )
}

fn records(keystore: &Path) -> serde_json::Value {
    let out = vsigner(
        &[
            "keystore",
            "inspect",
            "--json",
            "--storage",
            keystore.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
}

#[test]
fn a_keystore_rekey_moves_it_to_a_new_passphrase_then_a_key_file_without_touching_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("keystore");
    let config = dir.path().join("signer.json");
    let mut cfg = json!({
        "OrgId": "org_test", "AuthClientId": "vsc_test", "APIBaseURL": "http://127.0.0.1:9",
        "MQTTEndpoint": "mqtt://127.0.0.1:9", "ApprovalMode": "AlwaysApprove",
        "STORAGE_BUCKET_URL": keystore.to_str().unwrap(), "KeystoreSealing": "passphrase",
        "AllowPublicTestPrimes": true,
    });
    std::fs::write(&config, cfg.to_string()).unwrap();
    let (old, new) = ("the first passphrase", "the second passphrase");
    let out = import_one_prime_set(&config, 0, Some(old));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = records(&keystore);
    assert_eq!(before["records"].as_array().unwrap().len(), 1, "{before}");

    // A new passphrase, from the environment.
    let rekey = |passphrase: Option<&str>, args: &[&str], extra: &[(&str, &str)]| {
        let mut all = vec!["keystore", "rekey", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        vsigner(&all, passphrase, extra)
    };
    let out = rekey(
        Some(old),
        &["--to", "passphrase"],
        &[("VSIGNER_NEW_KEYSTORE_PASSPHRASE", new)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("KeystorePassphrase") && !said.contains(new),
        "{said}"
    );
    let refused = import_one_prime_set(&config, 1, Some(old));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong passphrase"));
    let out = import_one_prime_set(&config, 1, Some(new));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(records(&keystore)["records"].as_array().unwrap().len(), 2);

    // A wrong current passphrase cannot rekey; a short new one is refused.
    let out = rekey(
        Some(old),
        &["--to", "passphrase"],
        &[("VSIGNER_NEW_KEYSTORE_PASSPHRASE", "a third one")],
    );
    assert!(!out.status.success());
    let out = rekey(
        Some(new),
        &["--to", "passphrase"],
        &[("VSIGNER_NEW_KEYSTORE_PASSPHRASE", "short")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));

    // A key file instead of the passphrase.
    let key = dir.path().join("keystore.key");
    let out = rekey(
        Some(new),
        &["--to", "keyfile", "--key-file", key.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cfg["KeystoreSealing"] = json!("keyfile");
    cfg["KeystoreKeyFile"] = json!(key);
    std::fs::write(&config, cfg.to_string()).unwrap();
    let out = import_one_prime_set(&config, 2, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = records(&keystore);
    assert_eq!(after["provider"], "key-file", "{after}");
    assert_eq!(after["records"].as_array().unwrap().len(), 3, "{after}");
}
