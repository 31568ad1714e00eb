//! The console page's own signature checks (`assets/verify.js`), run in Node against
//! signatures made by the Rust crates the coordinator trusts (k256, p256, ed25519-dalek),
//! and the vendored noble libraries compared byte for byte with npm's packages.
//!
//! The page must not take the coordinator's word: a digest that is not the payload's, a
//! recovery id that names another signer, a vault address that is not the key's, or a
//! signature of something else must each be refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use k256::ecdsa::signature::hazmat::PrehashSigner;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vsigner_coordinator::console::VENDORED;
use vsigner_coordinator::crypto::{assemble_signed_eip1559, decode_unsigned_eip1559, eth_address, keccak256};

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/console/assets")
}

fn node_available() -> bool {
    if Command::new("node").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
        "bash .ci/run installs node"
    );
    println!("SKIPPED: node is not installed");
    false
}

/// `verifyHere` of each operation, as the page computes it (`null`, or `{ok, text}`).
fn verify_in_node(ops: &[Value]) -> Vec<Value> {
    serde_json::from_value(run_in_node("verify.js", "verifyHere", &json!(ops))).unwrap()
}

/// `function` of the page's module `module` mapped over `inputs` (an array), in Node.
fn run_in_node(module: &str, function: &str, inputs: &Value) -> Value {
    // Node resolves `@noble/hashes/…` inside the vendored noble-curves as the page's import
    // map does.
    let hashes = format!("file://{}/vendor/noble-hashes/", assets().display());
    let hook = format!(
        "export async function resolve(s, c, next) {{ return next(s.startsWith('@noble/hashes/') ? {hashes:?} + s.slice(14) : s, c); }}"
    );
    let script = format!(
        "import {{ register }} from 'node:module';
         register('data:text/javascript,' + encodeURIComponent({hook:?}));
         const m = await import({url:?});
         const inputs = JSON.parse(process.env.INPUTS);
         console.log(JSON.stringify(inputs.map((i) => m[{function:?}](i))));",
        url = format!("file://{}/{module}", assets().display()),
    );
    let out = Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .env("INPUTS", inputs.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn op(
    curve: &str,
    key: &[u8],
    kind: &str,
    payload: &[u8],
    digest: Option<[u8; 32]>,
    sig: &[u8],
    recovery: Option<u8>,
) -> Value {
    json!({
        "vaultId": format!("vlt_{curve}"),
        "vault": {
            "curve": curve,
            "publicKey": hex::encode(key),
            "ethereumAddress": if curve == "secp256k1" { eth_address(key) } else { None },
        },
        "sign": {
            "payloadKind": kind,
            "payload": hex::encode(payload),
            "signingDigest": digest.map(hex::encode),
            "derivationPath": null,
            "taproot": null,
        },
        "result": {"signature": hex::encode(sig), "recoveryId": recovery},
    })
}

fn eip191(message: &[u8]) -> [u8; 32] {
    let mut buf = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    buf.extend_from_slice(message);
    keccak256(&buf)
}

#[test]
fn the_page_verifies_signatures_itself_and_refuses_the_coordinators_lies() {
    if !node_available() {
        return;
    }
    let k1 = k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
    let k1_pub = k1.verifying_key().to_sec1_bytes().to_vec();
    let other = k256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap();
    let k1_sign = |digest: &[u8; 32]| {
        let (sig, rid) = k1.sign_prehash_recoverable(digest).unwrap();
        (sig.to_bytes().to_vec(), rid.to_byte())
    };

    // An EIP-1559 transaction: 0.5 ETH on Sepolia.
    let tx = hex::decode("02f383aa36a7078459682f008506fc23ac008252089400000000219ab540356cbb839cbe05303d7705fa8806f05b59d3b2000080c0").unwrap();
    let tx_digest = keccak256(&tx);
    let (tx_sig, tx_rid) = k1_sign(&tx_digest);
    let tx_op = |digest: [u8; 32], sig: &[u8], rid: u8| {
        op("secp256k1", &k1_pub, "eth_tx", &tx, Some(digest), sig, Some(rid))
    };
    // A message on secp256k1 (EIP-191).
    let msg = b"pay invoice 2026-114";
    let msg_digest = eip191(msg);
    let (msg_sig, msg_rid) = k1_sign(&msg_digest);
    // P-256: a message (SHA-256) and a digest.
    let p = p256::ecdsa::SigningKey::from_slice(&[0x33; 32]).unwrap();
    let p_pub = p.verifying_key().to_sec1_bytes().to_vec();
    let p_msg_digest: [u8; 32] = Sha256::digest(msg).into();
    let p_sig: p256::ecdsa::Signature = p.sign_prehash(&p_msg_digest).unwrap();
    let raw_digest = [0x24u8; 32];
    let p_dsig: p256::ecdsa::Signature = p.sign_prehash(&raw_digest).unwrap();
    // Ed25519 and BIP-340 sign the message itself.
    let ed = ed25519_dalek::SigningKey::from_bytes(&[0x44; 32]);
    let ed_sig = ed25519_dalek::Signer::sign(&ed, msg).to_bytes();
    let schnorr = k256::schnorr::SigningKey::from_bytes(&[0x55; 32]).unwrap();
    let sch_sig = schnorr.sign_raw(msg, &[0u8; 32]).unwrap().to_bytes();
    let sch_pub = schnorr.verifying_key().to_bytes().to_vec();

    let good = vec![
        tx_op(tx_digest, &tx_sig, tx_rid),
        op(
            "secp256k1",
            &k1_pub,
            "message",
            msg,
            Some(msg_digest),
            &msg_sig,
            Some(msg_rid),
        ),
        op(
            "secp256r1",
            &p_pub,
            "message",
            msg,
            Some(p_msg_digest),
            &p_sig.to_bytes(),
            None,
        ),
        op(
            "secp256r1",
            &p_pub,
            "digest",
            &raw_digest,
            Some(raw_digest),
            &p_dsig.to_bytes(),
            None,
        ),
        op(
            "ed25519",
            ed.verifying_key().as_bytes(),
            "message",
            msg,
            None,
            &ed_sig,
            None,
        ),
        op("bip340", &sch_pub, "message", msg, None, &sch_sig, None),
    ];
    // The transaction's result carries the signed transaction and its hash, as the
    // coordinator assembles them (alloy).
    let unsigned = decode_unsigned_eip1559(&tx).unwrap();
    let signed = assemble_signed_eip1559(&unsigned, &tx_sig.clone().try_into().unwrap(), tx_rid);
    let mut good = good;
    good[0]["result"]["rawTransaction"] = json!(format!("0x{}", hex::encode(&signed)));
    good[0]["result"]["txHash"] = json!(format!("0x{}", hex::encode(keccak256(&signed))));
    for (case, seen) in good.iter().zip(verify_in_node(&good)) {
        assert_eq!(seen["ok"], true, "{case}: {seen}");
        assert!(
            seen["text"]
                .as_str()
                .unwrap()
                .starts_with("✓ Verified in this browser"),
            "{seen}"
        );
    }
    let address = eth_address(&k1_pub).unwrap().to_lowercase();
    let first = &verify_in_node(&good[..1])[0];
    assert!(first["text"].as_str().unwrap().contains(&address), "{first}");

    // What a lying coordinator could show, each refused.
    let mut lies = Vec::new();
    // 1. A digest that is not the transaction's, with a valid signature of that digest.
    let lie = [0x99u8; 32];
    let (lie_sig, lie_rid) = k1_sign(&lie);
    lies.push((tx_op(lie, &lie_sig, lie_rid), "digest is not the payload's"));
    // 2. The other recovery id: another signer.
    lies.push((tx_op(tx_digest, &tx_sig, tx_rid ^ 1), "another signer"));
    // 3. A vault address that is not the key's.
    let mut wrong_address = good[0].clone();
    wrong_address["vault"]["ethereumAddress"] = json!(eth_address(&other.verifying_key().to_sec1_bytes()));
    lies.push((wrong_address, "is not its public key's"));
    // 4. A result that names another key than the vault's.
    let mut other_key = good[0].clone();
    other_key["result"]["publicKey"] = json!(hex::encode(other.verifying_key().to_sec1_bytes()));
    lies.push((other_key, "not the vault's"));
    // 5. A transaction's recovery id beyond Ethereum's 0 and 1.
    lies.push((tx_op(tx_digest, &tx_sig, tx_rid | 2), "must be 0 or 1"));
    // 6. A transaction hash that is not the signed transaction's, a signed transaction that
    // is not this one, or a hash with no transaction to check it by.
    let mut wrong_hash = good[0].clone();
    wrong_hash["result"]["txHash"] = json!(hex::encode([0u8; 32]));
    lies.push((wrong_hash, "not the signed transaction's"));
    let mut other_raw = good[0].clone();
    other_raw["result"]["rawTransaction"] = json!(format!(
        "0x{}",
        hex::encode(assemble_signed_eip1559(
            &unsigned,
            &lie_sig.clone().try_into().unwrap(),
            lie_rid
        ))
    ));
    lies.push((other_raw, "not this transaction with this signature"));
    let mut hash_alone = good[0].clone();
    hash_alone["result"]["rawTransaction"] = Value::Null;
    lies.push((hash_alone, "not this transaction with this signature"));
    // 7. An operation naming no vault (its key cannot be pinned).
    let mut no_vault = good[1].clone();
    no_vault["vaultId"] = Value::Null;
    lies.push((no_vault, "names no vault"));
    // 8. Signatures of another message, on every scheme.
    for case in &good[1..] {
        let mut c = case.clone();
        let mut payload = hex::decode(c["sign"]["payload"].as_str().unwrap()).unwrap();
        payload[0] ^= 1;
        c["sign"]["payload"] = json!(hex::encode(&payload));
        let curve = c["vault"]["curve"].as_str().unwrap().to_owned();
        let digest = match (curve.as_str(), c["sign"]["payloadKind"].as_str().unwrap()) {
            (_, "digest") => Some(payload.clone().try_into().unwrap()),
            ("secp256k1", _) => Some(eip191(&payload)),
            ("secp256r1", _) => Some(Sha256::digest(&payload).into()),
            _ => None,
        };
        c["sign"]["signingDigest"] = json!(digest.map(hex::encode));
        lies.push((c, "does not verify"));
    }
    let cases: Vec<Value> = lies.iter().map(|(c, _)| c.clone()).collect();
    for ((case, why), seen) in lies.iter().zip(verify_in_node(&cases)) {
        assert_eq!(seen["ok"], false, "{case}: {seen}");
        assert!(seen["text"].as_str().unwrap().contains(why), "{why}: {seen}");
    }

    // A child key's signature is not checked here: the page says so rather than guess.
    let mut child = good[0].clone();
    child["sign"]["derivationPath"] = json!("m/0/1");
    assert_eq!(verify_in_node(&[child])[0], Value::Null);
}

/// The page's audit check (`assets/audit.js`) agrees with `vsigner audit verify` on logs
/// made with vsigner-records: every statement and record verifies, every device action is
/// backed; a changed statement, an action without a statement and a record naming another
/// organisation are each reported.
#[test]
fn the_page_verifies_the_audit_logs_device_signatures() {
    use vsigner_records::{DeviceRecord, Statement, StatementKind};
    if !node_available() {
        return;
    }
    let org = "org_1";
    let keys = [
        ed25519_dalek::SigningKey::from_bytes(&[0x61; 32]),
        ed25519_dalek::SigningKey::from_bytes(&[0x62; 32]),
    ];
    let record = |id: &str, key: &ed25519_dalek::SigningKey, org: &str| {
        DeviceRecord {
            organisation_id: org.into(),
            device_id: id.into(),
            signing_key: key.verifying_key().to_bytes(),
            encryption_key: [7; 32],
            revision: 1,
        }
        .sign(key)
        .to_hex()
    };
    let device = |id: &str, key: &ed25519_dalek::SigningKey, rec: String| json!({"id": id, "identitySigningKey": hex::encode(key.verifying_key().to_bytes()), "record": rec});
    let statement = |seq: u32,
                     id: &str,
                     key: &ed25519_dalek::SigningKey,
                     kind: StatementKind,
                     content: &[&str]| {
        let signature = Statement {
            organisation_id: org,
            operation_id: "op_1",
            device_id: id,
            kind,
            content: content.to_vec(),
        }
        .sign(key);
        json!({"seq": seq.to_string(), "entityKind": "operation", "entityId": "op_1", "actor": id,
               "event": "device_statement",
               "detail": json!({"kind": kind.as_str(), "content": content, "signature": signature}).to_string()})
    };
    let action = |seq: u32, id: &str, event: &str| json!({"seq": seq.to_string(), "entityKind": "operation", "entityId": "op_1", "actor": id, "event": event, "detail": "{}"});
    let honest = json!({
        "organisationId": org,
        "devices": [device("dev_a", &keys[0], record("dev_a", &keys[0], org)),
                    device("dev_b", &keys[1], record("dev_b", &keys[1], org))],
        "auditLog": [
            statement(1, "dev_a", &keys[0], StatementKind::Vote, &["approve"]),
            action(2, "dev_a", "vote"),
            statement(3, "dev_b", &keys[1], StatementKind::KeygenResult, &["02ab", "cc"]),
            action(4, "dev_b", "keygen_result"),
            action(5, "cli_operator", "vote"),
        ],
    });
    // A coordinator that changed a vote, wrote an action no device signed, and kept a
    // record of another organisation.
    let mut lying = honest.clone();
    let mut changed: Value = serde_json::from_str(lying["auditLog"][0]["detail"].as_str().unwrap()).unwrap();
    changed["content"] = json!(["reject"]);
    lying["auditLog"][0]["detail"] = json!(changed.to_string());
    lying["auditLog"]
        .as_array_mut()
        .unwrap()
        .push(action(6, "dev_b", "vote"));
    lying["devices"][1]["record"] = json!(record("dev_b", &keys[1], "org_other"));
    let seen = run_in_node("audit.js", "verifyAudit", &json!([honest, lying]));
    assert_eq!(
        seen[0],
        json!({"statements": 2, "records": 2, "actions": 2, "problems": []}),
        "{seen}"
    );
    let problems: Vec<&str> = seen[1]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].contains("names another device, organisation or key"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("vote statement of device dev_a on op_1 is not signed"),
        "{problems:?}"
    );
    assert!(
        problems[2].contains("entry 2: vote of device dev_a"),
        "{problems:?}"
    );
    assert!(
        problems[3].contains("entry 6: vote of device dev_b"),
        "{problems:?}"
    );
}

/// The vendored noble modules are npm's published files, unchanged, and every one the
/// page can load is served.
#[test]
fn the_vendored_noble_libraries_are_npms() {
    let vendor = assets().join("vendor");
    let mut on_disk = Vec::new();
    for pkg in ["noble-curves", "noble-hashes"] {
        for entry in walk(&vendor.join(pkg)) {
            let rel = entry.strip_prefix(&vendor).unwrap().to_str().unwrap().to_owned();
            if rel.ends_with(".js") {
                on_disk.push(rel);
            }
        }
    }
    on_disk.sort();
    let mut served: Vec<String> = VENDORED.iter().map(|(p, _)| p.to_string()).collect();
    served.sort();
    assert_eq!(on_disk, served, "every vendored module is served, and only those");

    let Some(modules) = std::env::var_os("VSIGNER_TEST_NODE_MODULES").filter(|m| !m.is_empty()) else {
        assert!(
            std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
            "bash .ci/run installs @noble/curves and @noble/hashes: VSIGNER_TEST_NODE_MODULES must be set"
        );
        println!("SKIPPED: set VSIGNER_TEST_NODE_MODULES (bash .ci/run does) to compare with npm's packages");
        return;
    };
    let modules = PathBuf::from(modules);
    // npm checked each tarball against these digests when it installed it: the files below
    // are those packages', whatever cache they came through.
    let lock: Value =
        serde_json::from_slice(&std::fs::read(modules.join(".package-lock.json")).unwrap()).unwrap();
    for (pkg, integrity) in NOBLE_INTEGRITY {
        assert_eq!(
            lock["packages"][format!("node_modules/@noble/{pkg}")]["integrity"],
            integrity,
            "@noble/{pkg} installed from another tarball than 2.4.0's"
        );
    }
    for (path, body) in VENDORED {
        let (pkg, file) = path.split_once('/').unwrap();
        let published = modules.join("@noble").join(pkg.trim_start_matches("noble-"));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(published.join("package.json")).unwrap()).unwrap();
        assert_eq!(manifest["version"], "2.4.0", "{pkg}");
        let npm = std::fs::read_to_string(published.join(file)).unwrap();
        assert!(
            npm == *body,
            "{path} differs from npm's @noble/{}",
            pkg.trim_start_matches("noble-")
        );
    }
}

/// The npm registry's digests of the @noble/curves and @noble/hashes 2.4.0 tarballs.
const NOBLE_INTEGRITY: [(&str, &str); 2] = [
    (
        "curves",
        "sha512-P4/62zrgfH33CneE3Dn4WhJVA22YUU0eR51wKIan4NVRvwsA0YnPTwWGpNbpuacSujmSFLvyzpyuR30+fbq2Ew==",
    ),
    (
        "hashes",
        "sha512-X5XaVWZIBCT7HHZGm5I7ZQXDwLG+bGXuSrMQAW+7Zvl87h1kmc1ZB1VSRJcpUfoUrGQp4Fkoxm5kZ+Ms+aW+eA==",
    ),
];

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
