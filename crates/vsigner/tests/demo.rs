//! `vsigner demo` and `vsigner bench e2e` as a user runs them (the built binary), and the
//! demo's JSON checked again outside the project by `scripts/check-demo.py` (Python
//! `cryptography`, `eth_account`, `coincurve`, PyNaCl).
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn vsigner(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vsigner"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    if std::env::var_os("VSIGNER_TEST_ECHO").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether Python with `cryptography`, `eth_account` and `coincurve` is here (CI installs
/// them).
fn python_checker_available() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import cryptography, eth_account, eth_keys, coincurve, nacl",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `scripts/check-demo.py` on `doc`: (passed, its output).
fn independent_check(doc: &Value) -> (bool, String) {
    let mut child = Command::new("python3")
        .arg(repo_root().join("scripts/check-demo.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn flip_hex_byte(v: &mut Value) {
    let s = v.as_str().unwrap().to_owned();
    let (prefix, hex_part) = s.split_at(if s.starts_with("0x") { 2 } else { 0 });
    let mut bytes = hex::decode(hex_part).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    *v = Value::String(format!("{prefix}{}", hex::encode(bytes)));
}

#[test]
fn demo_json_is_one_document_that_passes_the_independent_check() {
    let out = vsigner(&["demo", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    // Exactly one JSON document on stdout.
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");

    let vaults = doc["vaults"].as_array().unwrap();
    assert_eq!(vaults.len(), 5);
    // The fifth: ed25519 of weighted devices, the first holding two of four shares, 3 sign.
    let weighted = &vaults[4];
    assert_eq!(
        (weighted["curve"].as_str(), weighted["threshold"].as_u64()),
        (Some("ed25519"), Some(3))
    );
    assert_eq!(weighted["weights"], serde_json::json!([2, 1, 1]));
    let secp = vaults.iter().find(|v| v["curve"] == "secp256k1").unwrap();
    let p256 = vaults.iter().find(|v| v["curve"] == "secp256r1").unwrap();
    let bip340 = vaults.iter().find(|v| v["curve"] == "bip340").unwrap();
    let ed = vaults
        .iter()
        .find(|v| v["curve"] == "ed25519" && v["weights"] == serde_json::json!([1, 1, 1]))
        .unwrap();
    for v in [secp, ed, p256, bip340] {
        assert_eq!(
            (v["threshold"].as_u64(), v["devices"].as_u64()),
            (Some(2), Some(3))
        );
    }
    assert_eq!(
        hex::decode(secp["public_key"].as_str().unwrap()).unwrap().len(),
        33
    );
    assert_eq!(hex::decode(ed["public_key"].as_str().unwrap()).unwrap().len(), 32);
    assert_eq!(
        hex::decode(p256["public_key"].as_str().unwrap()).unwrap().len(),
        33
    );
    assert_eq!(
        hex::decode(bip340["public_key"].as_str().unwrap()).unwrap().len(),
        32
    );
    assert!(secp["address"].as_str().unwrap().starts_with("0x"));
    assert!(bip340["address"].as_str().unwrap().starts_with("bc1p"));
    assert_ne!(bip340["taproot_output_key"], bip340["public_key"]);

    let signatures = doc["signatures"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = signatures
        .iter()
        .map(|s| (s["curve"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("secp256k1", "digest"),
            ("secp256k1", "eth_tx"),
            ("ed25519", "message"),
            ("ed25519", "message"),
            ("secp256r1", "message"),
            ("bip340", "message"),
            ("bip340", "message"),
            ("ed25519", "message"),
            ("secp256k1", "digest")
        ]
    );
    // Every committee of the weighted vault has its first device (the others hold 2 of the
    // 3 shares needed), which may use both its shares.
    let by_weighted = &signatures[7];
    assert_eq!(by_weighted["vault"], weighted["id"]);
    let parties = by_weighted["signers"].as_array().unwrap();
    assert_eq!(parties.len(), 3);
    assert!(parties.contains(&weighted["signers"][0]));
    assert_eq!(signatures[3]["derivation_path"], "m/44/501");
    assert_eq!(hex::decode(ed["chain_code"].as_str().unwrap()).unwrap().len(), 32);
    assert!(signatures[5]["taproot_output_key"].is_null());
    assert_eq!(signatures[6]["taproot_output_key"], bip340["taproot_output_key"]);
    for s in signatures {
        assert_eq!(s["verified"], true);
        assert!(s["latency_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(hex::decode(s["signature"].as_str().unwrap()).unwrap().len(), 64);
    }
    assert!(signatures[1]["raw_transaction"]
        .as_str()
        .unwrap()
        .starts_with("0x02"));
    assert!(signatures[0]["recovery_id"].is_u64());

    let reshare = &doc["reshares"][0];
    assert_eq!(reshare["public_key_unchanged"], true);
    assert_eq!(reshare["public_key"], secp["public_key"]);
    assert_eq!(
        (
            reshare["to"]["threshold"].as_u64(),
            reshare["to"]["devices"].as_u64()
        ),
        (Some(3), Some(4))
    );
    // The signature after the reshare: 3 signers, the new device among them.
    let newcomer = &reshare["joined"][0];
    let last = signatures[8]["signers"].as_array().unwrap();
    assert_eq!(last.len(), 3);
    assert!(last.contains(newcomer));

    let rejected = doc["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["vault"], ed["id"]);

    assert_eq!(doc["problems"].as_array().unwrap().len(), 0);
    // The public test primes are said loudly, in the document and on stderr.
    assert_eq!(doc["primes"]["public"], true);
    assert!(doc["warnings"][0]
        .as_str()
        .unwrap()
        .contains("PUBLIC TEST PRIMES"));
    assert!(stderr.contains("PUBLIC TEST PRIMES"), "{stderr}");

    if !python_checker_available() {
        assert!(
            std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
            "VSIGNER_TEST_REQUIRE_PYTHON is set (as .ci/run does) but python3 lacks cryptography, eth_account, coincurve or pynacl"
        );
        eprintln!("skipped the independent check: python3 with cryptography, eth_account and coincurve is not installed (pip install cryptography eth-account coincurve pynacl)");
        return;
    }
    let (ok, report) = independent_check(&doc);
    assert!(ok, "the independent check failed:\n{report}");
    assert!(report.contains(" 0 failed"), "{report}");

    // The checker is not a rubber stamp: each tampered document fails it.
    type Tamper = fn(&mut Value);
    let tampered: [(&str, Tamper); 13] = [
        ("ed25519 signature", |d| {
            flip_hex_byte(&mut d["signatures"][2]["signature"])
        }),
        ("ed25519 child-key signature", |d| {
            flip_hex_byte(&mut d["signatures"][3]["signature"])
        }),
        ("ed25519 chain code", |d| {
            flip_hex_byte(&mut d["vaults"][1]["chain_code"])
        }),
        ("P-256 signature", |d| {
            flip_hex_byte(&mut d["signatures"][4]["signature"])
        }),
        ("BIP-340 signature", |d| {
            flip_hex_byte(&mut d["signatures"][5]["signature"])
        }),
        ("Taproot signature", |d| {
            flip_hex_byte(&mut d["signatures"][6]["signature"])
        }),
        ("Taproot output key", |d| {
            // A key the checker must derive itself: another one is refused even when the
            // signature would verify under it.
            flip_hex_byte(&mut d["vaults"][3]["taproot_output_key"])
        }),
        ("digest signature", |d| {
            flip_hex_byte(&mut d["signatures"][0]["signature"])
        }),
        ("signed transaction", |d| {
            let raw = d["signatures"][1]["raw_transaction"].as_str().unwrap().to_owned();
            // Another chain id byte changes the signing hash: another sender recovers.
            let mut bytes = hex::decode(&raw[2..]).unwrap();
            bytes[3] ^= 0x02;
            d["signatures"][1]["raw_transaction"] = Value::String(format!("0x{}", hex::encode(bytes)));
        }),
        ("reshared key", |d| {
            flip_hex_byte(&mut d["reshares"][0]["public_key"])
        }),
        ("weighted committee's signature", |d| {
            flip_hex_byte(&mut d["signatures"][7]["signature"])
        }),
        ("weight-1 device listed for two shares", |d| {
            let second = d["vaults"][4]["signers"][1].clone();
            d["signatures"][7]["signers"] =
                serde_json::json!([second.clone(), second, d["vaults"][4]["signers"][0]]);
        }),
        ("vault of weighted devices", |d| {
            d["vaults"][4]["weights"] = serde_json::json!([1, 1, 1]);
        }),
    ];
    for (what, tamper) in tampered {
        let mut bad = doc.clone();
        tamper(&mut bad);
        let (ok, report) = independent_check(&bad);
        assert!(!ok, "a tampered {what} passed the independent check:\n{report}");
    }
}

/// The demo with `--console`: once done, it keeps the system running with the web console
/// open; a person signs in with the printed credentials and sees the demo's vaults; SIGTERM
/// then stops it and the summary follows.
#[test]
fn demo_summary_with_threshold_equal_to_devices() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsigner"))
        .args(["demo", "--devices", "2", "--threshold", "2", "--console"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let mut console = (String::new(), String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        let value = |prefix: &str| line.trim().strip_prefix(prefix).map(|v| v.trim().to_owned());
        if let Some(url) = value("The web console is open at") {
            console.0 = url;
        } else if let Some(org) = value("organisation id:") {
            console.1 = org;
        } else if let Some(password) = value("password:") {
            console.2 = password;
            break;
        }
    }
    assert!(!console.2.is_empty(), "the demo opened no console:\n{stderr}");
    let signed_in = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let page = http.get(&console.0).send().await.unwrap();
        assert_eq!(page.status(), 200, "{}", console.0);
        let base = console.0.trim_end_matches("/console/");
        let session = http
            .post(format!("{base}/console/session"))
            .json(&serde_json::json!({"organisationId": console.1, "name": "demo", "password": console.2}))
            .send()
            .await
            .unwrap();
        assert_eq!(session.status(), 200);
        let cookie = session.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = session.json::<Value>().await.unwrap()["csrfToken"]
            .as_str()
            .unwrap()
            .to_owned();
        http.post(format!("{base}/graphql"))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&serde_json::json!({"query": "query { vaults { name status } }"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    let vaults = signed_in["data"]["vaults"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        vaults.len() >= 2 && vaults.iter().all(|v| v["status"] == "Active"),
        "the console shows the demo's vaults: {signed_in}"
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    for line in lines {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stderr}\n{stdout}");
    assert!(
        stdout.contains("Every signature verified and every step behaved as stated."),
        "{stdout}"
    );
    assert!(stdout.contains("2-of-2 -> 3-of-3"), "{stdout}");
    assert!(stdout.contains("public key unchanged"), "{stdout}");
    assert!(stdout.contains("WARNING: THE DEVICES' PAILLIER KEYS"), "{stdout}");
    // Each long step is timed on stderr.
    assert!(stderr.contains("vaults created"), "{stderr}");
    assert!(stderr.contains("reshared to 3-of-3"), "{stderr}");
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("✓") && l.ends_with(" s)"))
            .count()
            >= 8,
        "{stderr}"
    );
}

#[test]
fn demo_refuses_bad_arguments_in_one_sentence() {
    for (args, expected) in [
        (
            vec!["demo", "--threshold", "1"],
            "--threshold must be between 2 and --devices (3); got 1",
        ),
        (
            vec!["demo", "--devices", "11"],
            "--devices must be between 2 and 10 (got 11)",
        ),
        (
            vec!["demo", "--devices", "3", "--threshold", "4"],
            "--threshold must be between 2 and --devices (3); got 4",
        ),
        (
            vec!["demo", "--primes", "/nonexistent/pool.json"],
            "cannot read prime pool /nonexistent/pool.json",
        ),
    ] {
        let out = vsigner(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    }
    let out = vsigner(&["demo", "--fresh-primes", "--primes", "x.json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[test]
fn bench_e2e_reports_latencies_next_to_the_protocol_cost() {
    // More runs than the pool holds: the pool must be refilled between signatures.
    let out = vsigner(&[
        "bench",
        "e2e",
        "--json",
        "--runs",
        "3",
        "--trace",
        "--throughput",
        "4",
        "--requests",
        "8",
        "--presigned-requests",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench e2e failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let rows = doc["end_to_end"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["operation"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ecdsa_sign_e2e",
            "ecdsa_sign_with_presignature_e2e",
            "ecdsa_p256_sign_e2e",
            "eddsa_sign_e2e",
            "bip340_taproot_sign_e2e",
            "ecdsa_keygen_e2e",
            "eddsa_keygen_e2e"
        ]
    );
    for r in rows {
        assert_eq!(r["runs"], 3);
        let p50 = r["p50_ms"].as_f64().unwrap();
        assert!(p50 > 0.0, "{r}");
        let base = r["protocol_median_ms"].as_f64().unwrap();
        assert!(base > 0.0);
        assert!(
            (r["ratio"].as_f64().unwrap() - p50 / base).abs() < 0.1 + p50 / base * 0.01,
            "{r}"
        );
        let protocol = r["protocol"].as_str().unwrap();
        assert!(
            doc["protocols"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["operation"] == protocol),
            "{protocol} is not among the protocol measurements"
        );
    }

    // --trace: every stage of every kind, from the daemons' spans.
    // Stages are of signatures; vault creations are timed whole.
    let stages = doc["stages"].as_array().expect("--trace gives stage reports");
    assert_eq!(stages.len(), names.len() - 2);
    for report in stages {
        let kind = report["operation"].as_str().unwrap();
        assert_eq!(report["runs"], 3, "{kind}: every signature traced");
        let rows = report["stages"].as_array().unwrap();
        let stage = |name: &str| {
            rows.iter()
                .find(|r| r["stage"] == name)
                .unwrap_or_else(|| panic!("{kind}: no stage {name}"))["p50_ms"]
                .as_f64()
                .unwrap()
        };
        for name in [
            "request",
            "notify and list",
            "vote checks",
            "approval",
            "vote",
            "quorum to ready",
            "run checks",
            "run mark",
            "protocol",
            "submit",
            "result seen",
        ] {
            assert!(stage(name) >= 0.0, "{kind}: {name}");
        }
        // Spans that were really recorded: the approver answers, the protocol runs rounds,
        // and the stages add up to no more than the end-to-end latency's worst.
        assert!(stage("approval") > 0.0 && stage("protocol") > 0.0, "{report}");
        assert!(
            rows.iter()
                .any(|r| r["stage"].as_str().unwrap().starts_with("  protocol round")),
            "{kind}: no protocol round"
        );
        let e2e = doc["end_to_end"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["operation"] == kind)
            .unwrap();
        let sum: f64 = rows
            .iter()
            .filter(|r| !r["stage"].as_str().unwrap().starts_with(' '))
            .map(|r| r["p50_ms"].as_f64().unwrap())
            .sum();
        assert!(
            sum <= e2e["max_ms"].as_f64().unwrap() * 1.5 + 1.0,
            "{kind}: stages {sum} ms against {e2e}"
        );
        // Every signature takes the two approvals its quorum needs as votes; the third
        // device (which abstains) may find the operation done before it votes, on a
        // loaded machine.
        let calls = report["coordinator_calls"].as_array().unwrap();
        let per_signature = |call: &str| {
            calls
                .iter()
                .find(|c| c["call"] == call)
                .map_or(0.0, |c| c["per_signature"].as_f64().unwrap())
        };
        assert!(per_signature("vote") >= 2.0, "{kind}: {calls:?}");
        assert_eq!(per_signature("requestSignature"), 1.0, "{kind}: {calls:?}");
    }
    // --throughput: sustained EdDSA signing, then ECDSA message signatures offered at 80 % of
    // the presign CPU bound (from the bare protocols of the same run).
    let throughput = doc["throughput"].as_array().expect("--throughput gives a report");
    assert_eq!(throughput.len(), 2);
    let (eddsa, presigned) = (&throughput[0], &throughput[1]);
    assert_eq!(eddsa["requests"], 8);
    assert_eq!(eddsa["in_flight"], 4);
    assert!(eddsa["signatures_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(presigned["operation"], "ecdsa_sign_presigned");
    assert_eq!(presigned["requests"], 2);
    let bound = presigned["presign_bound_per_second"].as_f64().unwrap();
    let offered = presigned["offered_per_second"].as_f64().unwrap();
    assert!(
        (offered - 0.8 * bound).abs() <= 0.01 + bound * 0.01,
        "{presigned}"
    );
    // From a full pool, the first two requests get a presignature.
    assert_eq!(presigned["with_presignature"], 2, "{presigned}");
    assert!(presigned["of_bound"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_soak_accounts_for_every_request() {
    // Every 10th request is ECDSA: presignatures are taken, and checked against the records.
    let out = vsigner(&[
        "bench",
        "soak",
        "--json",
        "--requests",
        "30",
        "--in-flight",
        "6",
        "--ecdsa-every",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench soak failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let a = &doc["account"];
    assert_eq!(
        (a["accepted"].as_u64(), a["signed"].as_u64()),
        (Some(30), Some(30)),
        "{a}"
    );
    for zero in [
        "refused",
        "lost",
        "duplicated",
        "presignatures_reused",
        "unaccounted",
    ] {
        assert_eq!(a[zero], 0, "{zero}: {a}");
    }
    let used = a["presignatures_used"].as_u64().unwrap();
    assert!(used >= 1, "no ECDSA request took a presignature: {a}");
    assert!(
        a["presignatures_taken_by_devices"].as_u64().unwrap() >= 2 * used,
        "{a}"
    );
    let kinds: Vec<&str> = doc["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["operation"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["eddsa_sign", "ecdsa_sign_message"]);
    assert!(doc["signatures_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_scale_creates_signs_and_reshares_every_vault() {
    // Four devices in two signer instances; Schnorr schemes need no aux-info.
    let out = vsigner(&[
        "bench",
        "scale",
        "--json",
        "--vaults",
        "3",
        "--devices",
        "4",
        "--threshold",
        "3",
        "--curves",
        "ed25519,bip340",
        "--instances",
        "2",
        "--in-flight",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench scale failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let phases = doc["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(names, ["keygen", "sign", "reshare", "sign after reshare"]);
    for p in phases {
        assert_eq!(p["operations"], 3, "{p}");
        assert!(p["p50_ms"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["peak_rss_mib"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert!(doc["keystores_kib"].as_f64().unwrap() > 0.0);
    let out = vsigner(&["bench", "scale", "--devices", "3", "--instances", "4"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--instances must be 1 to --devices"));
}
