//! Disaster recovery through the real daemons: three signers (one device each, each its own
//! `DisasterRecoveryDir`, as on three servers) with the operator's ML-KEM-768 public key make
//! 2-of-3 vaults of every scheme; each device writes a `.dr` file per vault. `vsigner recover`
//! rebuilds each key from two devices' files, and the recovered key signs what an
//! independent library verifies under the vault's key: an EIP-1559 transaction whose sender
//! Python's `eth_account` recovers as the vault's address, a P-256 message (`p256`), an
//! ed25519 message (`ed25519-dalek`'s expanded-key signing) and a BIP-340 message (`k256`).
//! Python's `kyber-py` opens a daemon's file. A reshare rewrites the files of the new holders
//! and removes the leaver's; a mix of old and new files, another vault's file, a wrong key and a
//! truncated file are each refused in one sentence. Then a signer moves with `keystore export`
//! (to the operator's key) and `keystore import` (under a key file) and keeps signing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::*;
use super::{completed, KEYGEN};

/// `vsigner recover keygen` into `dir`: (private key path, public key path).
fn dr_keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    let out = Command::new(bin())
        .args(["recover", "keygen", "--private-key"])
        .arg(&private)
        .arg("--public-key")
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (private, public)
}

/// `vsigner recover --json`: the document, or the error sentence.
fn recover(private: &Path, files: &[PathBuf], expect: Option<&str>) -> Result<Value, String> {
    let mut cmd = Command::new(bin());
    cmd.args(["recover", "--json", "--private-key"]).arg(private);
    if let Some(e) = expect {
        cmd.args(["--expect-public-key", e]);
    }
    let out = cmd.args(files).output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The error's text is one sentence on one line.
fn one_sentence(err: &str) -> &str {
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// Waits until each of `paths` exists and its envelope's `requestId` is `request`.
async fn wait_files(paths: &[PathBuf], request: &str) {
    let start = Instant::now();
    for path in paths {
        loop {
            let doc: Option<Value> = std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if doc.as_ref().is_some_and(|d| d["requestId"] == request) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} was not written for {request}: {doc:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Python 3 with `modules`, or `None` (then the caller skips, unless CI requires Python).
fn python_with(modules: &str) -> Option<()> {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
            "VSIGNER_TEST_REQUIRE_PYTHON is set but python3 lacks {modules}"
        );
        eprintln!("skipped an independent check: python3 with {modules} is not installed");
    }
    ok.then_some(())
}

/// The sender eth_account recovers from an EIP-1559 transaction it signs with `private_key`.
fn eip1559_sender(private_key_hex: &str) -> Option<String> {
    python_with("eth_account")?;
    let script = r#"
import sys
from eth_account import Account
tx = {"type": 2, "chainId": 1, "nonce": 7, "to": "0x000000000000000000000000000000000000dEaD",
      "value": 10**15, "gas": 21000, "maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 10**9, "data": b""}
signed = Account.sign_transaction(tx, bytes.fromhex(sys.argv[1]))
raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
print(Account.recover_transaction(raw))
"#;
    let out = Command::new("python3")
        .args(["-c", script, private_key_hex])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

async fn vault(operator: &Operator, id: &str) -> Value {
    operator
        .vault(id, "curve publicKey ethereumAddress keyGeneration")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_recovers_from_the_devices_dr_files_and_the_key_signs() {
    let root = tempfile::tempdir().unwrap();
    let (private, public) = dr_keygen(root.path(), "operator");
    let (other_private, _) = dr_keygen(root.path(), "other");
    // The key a moved signer's backup is encrypted to (not the DR key, which stays offline).
    let (transfer_private, transfer_public) = dr_keygen(root.path(), "transfer");
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    let webhook = start_webhook();
    // The two ECDSA keygens start together: each may run aux-info for the device set.
    let mut signers = Signer::one_device_each(
        root.path(),
        &org,
        &coordinator_url,
        &broker_url,
        &webhook,
        &["a", "b", "c"],
        &[(0, 2), (2, 2), (4, 2)],
    );
    let dr_dirs: Vec<PathBuf> = signers.iter().map(|s| s.dir.join("disaster-recovery")).collect();
    for (s, dir) in signers.iter_mut().zip(&dr_dirs) {
        // The key as a path for two signers, as PEM text for the third.
        let key = if s.name == "s3" {
            json!(std::fs::read_to_string(&public).unwrap())
        } else {
            json!(public.to_str().unwrap())
        };
        s.tweak(|cfg| {
            cfg["DisasterRecoveryPublicKey"] = key;
            cfg["DisasterRecoveryDir"] = json!(dir.to_str().unwrap());
        });
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let abc = operator.wait_devices(&["a", "b", "c"]).await;

    let curves = [
        ("secp256k1", "ecdsa.secp256k1"),
        ("secp256r1", "ecdsa.secp256r1"),
        ("ed25519", "eddsa.ed25519"),
        ("bip340", "schnorr.secp256k1"),
    ];
    let mut keygens = Vec::new();
    for (curve, _) in curves {
        keygens.push(
            operator
                .create_vault(&format!("dr-{curve}"), curve, 2, &abc)
                .await,
        );
    }
    // The files of each device (signer k runs device abc[k]) of each vault.
    let files_of = |vault: &str, suffix: &str| -> Vec<PathBuf> {
        dr_dirs
            .iter()
            .zip(&abc)
            .map(|(dir, device)| dir.join(device).join(format!("{vault}.{suffix}.dr")))
            .collect()
    };
    let mut vaults = Vec::new();
    for ((curve, suffix), keygen) in curves.iter().zip(&keygens) {
        let op = operator.wait_final(keygen, KEYGEN).await;
        completed(&op);
        let files = files_of(&op.vault_id, suffix);
        wait_files(&files, keygen).await;
        vaults.push((*curve, op.vault_id.clone(), files));
    }

    for (curve, vault_id, files) in &vaults {
        let v = vault(&operator, vault_id).await;
        let public_key = hex::decode(v["publicKey"].as_str().unwrap()).unwrap();
        // Envelope: the clear fields name the vault, the scheme and the keygen.
        let envelope: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!(envelope["vaultId"], json!(vault_id));
        assert_eq!(envelope["kemSuite"], "ML-KEM-768+AES-256-GCM");
        assert!(envelope.get("previousRequestId").is_none(), "{envelope}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&files[0]), 0o600, "{}", files[0].display());
            assert_eq!(mode(files[0].parent().unwrap()), 0o700);
            assert_eq!(mode(&dr_dirs[0]), 0o700);
        }
        // Any two devices' files rebuild the key; the recovered key signs.
        for pair in [[0, 1], [1, 2], [0, 2]] {
            let two = [files[pair[0]].clone(), files[pair[1]].clone()];
            let expect = if *curve == "secp256k1" {
                v["ethereumAddress"].as_str().unwrap().to_owned()
            } else if *curve == "bip340" {
                // The coordinator gives the x-only key; recover compares the compressed one.
                String::new()
            } else {
                hex::encode(&public_key)
            };
            let doc = recover(&private, &two, (!expect.is_empty()).then_some(expect.as_str()))
                .unwrap_or_else(|e| panic!("{curve} {pair:?}: {e}"));
            assert_eq!(
                (doc["threshold"].as_u64(), doc["sharesUsed"].as_u64()),
                (Some(2), Some(2)),
                "{doc}"
            );
            signs_with_the_recovered_key(curve, &doc, &public_key, &v);
        }
        // One file is not enough: it says how many are missing.
        let err = recover(&private, &files[..1], None).unwrap_err();
        assert!(one_sentence(&err).contains("1 more"), "{err}");
        // A wrong private key opens nothing.
        let err = recover(&other_private, &files[..2], None).unwrap_err();
        assert!(
            one_sentence(&err).contains("not encrypted to this private key"),
            "{err}"
        );
    }

    // kyber-py and `cryptography` open a file a daemon wrote; the plaintext is tss-lib's JSON.
    if python_with("kyber_py, cryptography").is_some() {
        let (_, vault_id, files) = &vaults[0];
        let out = Command::new("python3")
            .arg(repo_root().join("scripts/open-dr.py"))
            .arg(&private)
            .arg(&files[1])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let plain = &doc["plaintext"];
        assert_eq!(plain["VaultId"], json!(vault_id), "{doc}");
        assert_eq!(plain["Threshold"], 1, "tss-lib's threshold: signers needed − 1");
        let data = plain["Data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["ECDSAPub"]["Curve"], "secp256k1");
        assert!(
            data[0]["Xi"].is_number() && data[0]["ShareID"].is_number(),
            "{doc}"
        );
    }

    // Files of two vaults: refused, naming what is wrong.
    let mixed = [vaults[0].2[0].clone(), vaults[2].2[1].clone()];
    let err = recover(&private, &mixed, None).unwrap_err();
    assert!(
        one_sentence(&err).contains("vault") || err.contains("scheme"),
        "{err}"
    );
    // A truncated file.
    let truncated = root.path().join("truncated.dr");
    let bytes = std::fs::read(&vaults[0].2[0]).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let cut = text.replace(
        &text[text.find("\"dataB64\"").unwrap()..],
        "\"dataB64\": \"AAAA\"}",
    );
    std::fs::write(&truncated, cut).unwrap();
    let err = recover(&private, &[truncated, vaults[0].2[1].clone()], None).unwrap_err();
    assert!(one_sentence(&err).contains("truncated"), "{err}");

    // A reshare of the ed25519 vault to a and b, 2-of-2: their files are rewritten (the
    // reshare's request id, the keygen as the previous one).
    let (_, ed_vault, ed_files) = vaults[2].clone();
    let old_a = std::fs::read(&ed_files[0]).unwrap();
    let kept_old_a = root.path().join("old-a.dr");
    std::fs::write(&kept_old_a, &old_a).unwrap();
    let reshare = operator.request_reshare(&ed_vault, 2, &abc[..2]).await;
    let reshare_op = operator.wait_final(&reshare, KEYGEN).await;
    completed(&reshare_op);
    wait_files(&ed_files[..2], &reshare).await;
    // c dealt if the committee (two of the three old holders) included it: then it commits
    // its departure and removes its file with its share. Otherwise it took no part, learnt
    // nothing signed about the new sharing, and keeps both (nothing is destroyed on the
    // coordinator's word).
    let c_dealt = reshare_op.committee.iter().any(|m| m.device_id == abc[2]);
    let start = Instant::now();
    while c_dealt && ed_files[2].exists() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the leaver's file stays"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !c_dealt {
        assert!(ed_files[2].exists(), "a holder that did not deal keeps its file");
    }
    let envelope: Value = serde_json::from_slice(&std::fs::read(&ed_files[0]).unwrap()).unwrap();
    assert_eq!(envelope["previousRequestId"], json!(keygens[2]), "{envelope}");
    let v = vault(&operator, &ed_vault).await;
    let ed_key = hex::decode(v["publicKey"].as_str().unwrap()).unwrap();
    let doc = recover(&private, &ed_files[..2], Some(&hex::encode(&ed_key))).unwrap();
    signs_with_the_recovered_key("ed25519", &doc, &ed_key, &v);
    // An old-generation file with a new one: the shares are of different generations.
    let err = recover(&private, &[kept_old_a, ed_files[1].clone()], None).unwrap_err();
    assert!(one_sentence(&err).contains("one generation"), "{err}");

    // A restart writes every file again from the keystore: a deleted one comes back (a
    // crash between a commit and its file), the others are sealed anew (a new key, or a file
    // from a time the files were off, would be replaced).
    std::fs::remove_file(&vaults[1].2[0]).unwrap();
    let before = std::fs::read(&vaults[0].2[0]).unwrap();
    signers[0].proc().kill();
    signers[0].start();
    wait_files(&vaults[1].2[..1], &keygens[1]).await;
    recover(&private, &vaults[1].2[..2], None).unwrap();
    let start = Instant::now();
    while std::fs::read(&vaults[0].2[0]).unwrap() == before {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not rewritten at start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    recover(&private, &[vaults[0].2[0].clone(), vaults[0].2[2].clone()], None).unwrap();

    // Device c moves: its signer stops, its keystore is exported to the operator's ML-KEM
    // key and restored into a new keystore under a key file; the moved signer signs with b
    // while a is down (so the committee needs c).
    let backup = root.path().join("c.backup");
    let c_config = signers[2].config.clone();
    let export_to = |recipient: &Path| {
        Command::new(bin())
            .args(["keystore", "export", "--config", c_config.to_str().unwrap()])
            .args([
                "--to",
                backup.to_str().unwrap(),
                "--recipient",
                recipient.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    // Not while the signer runs: the keystore is in use.
    let out = export_to(&transfer_public);
    assert!(!out.status.success() && !backup.exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    signers[2].proc().kill();
    // Not to the DR key: its private key must not come near a signer.
    let out = export_to(&public);
    assert!(!out.status.success() && !backup.exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DisasterRecoveryPublicKey"), "{err}");
    let out = export_to(&transfer_public);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("1 devices") && said.contains("sealed by the ml-kem-768 provider"),
        "{said}"
    );
    let digest: String = said
        .split("(sha256 ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(digest.len(), 64, "{said}");
    let moved = root.path().join("moved");
    signers[2].tweak(|cfg| {
        cfg["STORAGE_BUCKET_URL"] = json!(moved.join("keystore").to_str().unwrap());
        cfg["KeystoreSealing"] = json!("keyfile");
        cfg["KeystoreKeyFile"] = json!(moved.join("keystore.key").to_str().unwrap());
        cfg.as_object_mut().unwrap().remove("KeystorePassphrase");
    });
    std::fs::create_dir_all(&moved).unwrap();
    let config = signers[2].config.to_str().unwrap().to_owned();
    // Another key does not open it.
    let out = Command::new(bin())
        .args([
            "keystore",
            "import",
            "--config",
            &config,
            "--from",
            backup.to_str().unwrap(),
        ])
        .args([
            "--private-key",
            other_private.to_str().unwrap(),
            "--expect-sha256",
            &digest,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not open with this key"), "{err}");
    let import = |expect: &str| {
        Command::new(bin())
            .args([
                "keystore",
                "import",
                "--config",
                &config,
                "--from",
                backup.to_str().unwrap(),
            ])
            .args([
                "--private-key",
                transfer_private.to_str().unwrap(),
                "--expect-sha256",
                expect,
            ])
            .output()
            .unwrap()
    };
    // The digest the exporting side printed is required and checked (anyone can encrypt a
    // backup to a public key).
    let out = Command::new(bin())
        .args([
            "keystore",
            "import",
            "--config",
            &config,
            "--from",
            backup.to_str().unwrap(),
        ])
        .args(["--private-key", transfer_private.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--expect-sha256"), "{err}");
    let out = import(&"0".repeat(64));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the backup"), "{err}");
    let out = import(&digest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("restored") && said.contains("keyfile"), "{said}");
    signers[2].start();
    signers[0].proc().kill();
    let (_, secp_vault, _) = &vaults[0];
    let digest = [0x42u8; 32];
    let op = operator
        .signed(secp_vault, json!({"digest": hex::encode(digest)}))
        .await;
    let committee: Vec<&str> = op.committee.iter().map(|m| m.device_id.as_str()).collect();
    assert!(committee.contains(&abc[2].as_str()), "{committee:?}");
    let key = vault(&operator, secp_vault).await["publicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    super::verify_secp256k1(&key, &digest, &op);
    drop(signers);
}

/// Signs with the key `vsigner recover` printed and verifies under the vault's public key
/// with a library that is not the project's.
fn signs_with_the_recovered_key(curve: &str, doc: &Value, public_key: &[u8], vault: &Value) {
    let message = b"recovered in a drill";
    match curve {
        "secp256k1" => {
            let private_key = doc["privateKey"].as_str().unwrap();
            assert_eq!(
                doc["ethereumAddress"].as_str().unwrap().to_lowercase(),
                vault["ethereumAddress"].as_str().unwrap().to_lowercase()
            );
            if let Some(sender) = eip1559_sender(private_key) {
                assert_eq!(
                    sender.to_lowercase(),
                    vault["ethereumAddress"].as_str().unwrap().to_lowercase(),
                    "the transaction's sender is the vault's address"
                );
            }
        }
        "secp256r1" => {
            use p256::ecdsa::signature::{Signer as _, Verifier as _};
            use p256::pkcs8::DecodePrivateKey as _;
            let key = p256::SecretKey::from_pkcs8_pem(doc["pkcs8"].as_str().unwrap()).unwrap();
            let signature: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(key).sign(message);
            p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                .unwrap()
                .verify(message, &signature)
                .expect("the recovered P-256 key signs for the vault key");
        }
        "ed25519" => {
            let expanded: [u8; 64] = hex::decode(doc["expandedSecretKey"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            // From its two halves: `ExpandedSecretKey::from_bytes` would clamp the scalar,
            // which a threshold key's scalar is not.
            let (scalar, prefix) = expanded.split_at(32);
            let esk = ed25519_dalek::hazmat::ExpandedSecretKey {
                scalar: curve25519_dalek::Scalar::from_canonical_bytes(scalar.try_into().unwrap()).unwrap(),
                hash_prefix: prefix.try_into().unwrap(),
            };
            let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key.try_into().unwrap()).unwrap();
            let signature = ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&esk, message, &vk);
            vk.verify_strict(message, &signature)
                .expect("the recovered ed25519 key signs for the vault key");
        }
        "bip340" => {
            let private_key = hex::decode(doc["privateKey"].as_str().unwrap()).unwrap();
            let signing = k256::schnorr::SigningKey::from_bytes(&private_key).unwrap();
            let signature = signing.sign_raw(message, &[7u8; 32]).unwrap();
            assert_eq!(doc["xOnlyPublicKey"], json!(hex::encode(public_key)));
            k256::schnorr::VerifyingKey::from_bytes(public_key)
                .unwrap()
                .verify_raw(message, &signature)
                .expect("the recovered BIP-340 key signs for the vault's x-only key");
        }
        other => panic!("no check for {other}"),
    }
}
