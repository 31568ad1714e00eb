//! The web console in real Chromium (Debian's, driven by playwright-core from npm), against
//! the real daemons. Alice registers a passkey in the page; Chromium's virtual
//! authenticator makes it, holds it and verifies her (it stands in for the biometric
//! check). The page's passkeys file configures device c, whose vote comes from her
//! (`ApprovalMode = Human`), checked by c itself.
//!
//! Olivia, an operator, creates a mixed 2-of-3 vault and a 2-of-2 vault {a, c} with the
//! page's form. Alice, an approver, approves c's part of both key generations in the page
//! and watches each complete live (server-sent events, no reload). Olivia requests a
//! message's signature with the form; Alice approves it, it completes, the page verifies it
//! with WebCrypto, and it verifies here;
//! she rejects another, which ends Rejected with no signature. With `VSIGNER_UPDATE_SCREENSHOTS=1`
//! the pages are saved under docs/console/ for the README.
//!
//! The console is served by the coordinator here, so c's configuration must acknowledge
//! that with `ApprovalAcceptInsecure = true` (docs/approvals.md: the page people approve on
//! is trusted).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::harness::*;
use super::people::{human_request, signers_with_people_for_c};
use super::{completed, verify_ed25519, KEYGEN};

/// Chromium and playwright-core, or why the test cannot run.
fn browser_tools() -> Option<(String, String)> {
    let chromium = std::env::var("VSIGNER_TEST_CHROMIUM")
        .ok()
        .filter(|p| !p.is_empty());
    let modules = std::env::var("VSIGNER_TEST_NODE_MODULES")
        .ok()
        .filter(|p| !p.is_empty());
    match (chromium, modules) {
        (Some(c), Some(m)) if PathBuf::from(&m).join("playwright-core").exists() => Some((c, m)),
        _ => {
            assert!(
                std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
                "bash .ci/run installs Chromium and playwright-core: VSIGNER_TEST_CHROMIUM and VSIGNER_TEST_NODE_MODULES must be set"
            );
            println!("SKIPPED: set VSIGNER_TEST_CHROMIUM and VSIGNER_TEST_NODE_MODULES (bash .ci/run does)");
            None
        }
    }
}

struct Page {
    chromium: String,
    modules: String,
    base: String,
    org: String,
    password: String,
    /// Olivia, an operator, creates vaults and requests signatures in the page.
    operator_password: String,
    passkey: Value,
    screenshots: Option<PathBuf>,
}

impl Page {
    /// Runs one browser step as Alice; returns what the page showed.
    fn step(&self, action: &str, operation: &str, device: &str, expect: &str, shot: Option<&str>) -> Value {
        self.run(json!({
            "name": "alice", "password": self.password, "passkey": self.passkey, "action": action,
            "operationId": operation, "deviceId": device, "expect": expect, "shot": shot,
        }))
    }

    /// Runs one browser step as Olivia (`extra`: the action and its fields).
    fn as_operator(&self, extra: Value) -> Value {
        let mut step = json!({"name": "olivia", "password": self.operator_password});
        step.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.run(step)
    }

    fn run(&self, mut step: Value) -> Value {
        step["base"] = json!(self.base);
        step["organisationId"] = json!(self.org);
        step["screenshots"] = json!(self.screenshots);
        let out = Command::new("node")
            .arg(repo_root().join("crates/vsigner/tests/console/browser.cjs"))
            .env("VSIGNER_CONSOLE_STEP", step.to_string())
            .env("VSIGNER_TEST_CHROMIUM", &self.chromium)
            .env("VSIGNER_TEST_NODE_MODULES", &self.modules)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "browser step {step}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_in_the_console_with_a_passkey() {
    let Some((chromium, modules)) = browser_tools() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    // Browsers offer passkeys on http:// only for localhost.
    let base = coordinator_url.replace("127.0.0.1", "localhost");
    let webhook = start_webhook();
    let operator = Operator::new(&coordinator_url, &org);
    let made = operator
        .gql(
            "mutation { createConsoleUser(name: \"alice\", role: \"approver\") { password } }",
            json!({}),
        )
        .await;
    let olivia = operator
        .gql(
            "mutation { createConsoleUser(name: \"olivia\", role: \"operator\") { password } }",
            json!({}),
        )
        .await;
    let screenshots = std::env::var_os("VSIGNER_UPDATE_SCREENSHOTS").map(|_| {
        let dir = repo_root().join("docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let mut page = Page {
        chromium,
        modules,
        base: base.clone(),
        org: org.id.clone(),
        password: made["createConsoleUser"]["password"].as_str().unwrap().to_owned(),
        operator_password: olivia["createConsoleUser"]["password"]
            .as_str()
            .unwrap()
            .to_owned(),
        passkey: Value::Null,
        screenshots,
    };

    // Alice registers a passkey in the page: Chromium's virtual authenticator makes it and
    // verifies her, the coordinator checks the registration with webauthn-rs-core, and the
    // page shows the passkeys file that c takes.
    let registered = tokio::task::block_in_place(|| page.step("register", "", "", "", Some("passkeys")));
    page.passkey = registered["passkey"].clone();
    let file = registered["file"].as_str().unwrap().to_owned();
    let entries: Value = serde_json::from_str(&file).unwrap();
    assert!(
        entries["passkeys"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("alice ("),
        "{file}"
    );
    let mut signers = signers_with_people_for_c(
        root.path(),
        &org,
        (&coordinator_url, &broker_url),
        &webhook,
        &file,
        &base,
    );
    // The coordinator serves the console here: c must say it accepts that.
    signers[2].tweak(|cfg| {
        cfg["APIBaseURL"] = json!(base);
        cfg["ApprovalAcceptInsecure"] = json!(true);
    });
    for s in &mut signers {
        s.start();
    }
    let abc = operator.wait_devices(&["a", "b", "c"]).await;
    let c = abc[2].as_str();

    // Key generations: Alice approves c's part of each in the page.
    // Olivia, an operator, creates both vaults in the page: a mixed 2-of-3 (a and b approve
    // by webhook, c by Alice) and a 2-of-2 of a and c that needs Alice.
    let created = tokio::task::block_in_place(|| {
        page.as_operator(json!({"action": "new-vault", "shot": "new-vault", "vault": {
            "name": "treasury", "scheme": "ed25519", "devices": ["a", "b", "c"], "threshold": 2}}))
    });
    let mixed = created["operationId"].as_str().unwrap().to_owned();
    let created = tokio::task::block_in_place(|| {
        page.as_operator(json!({"action": "new-vault", "vault": {
            "name": "alice-must-sign", "scheme": "ed25519", "devices": ["a", "c"], "threshold": 2}}))
    });
    let needs_c = created["operationId"].as_str().unwrap().to_owned();
    for op in [&mixed, &needs_c] {
        human_request(&operator, op, c).await;
        let seen = tokio::task::block_in_place(|| page.step("approve", op, c, "Completed", None));
        assert_eq!(seen["signedInAs"], "alice");
        assert!(seen["request"].as_str().unwrap().contains(op.as_str()), "{seen}");
        completed(&operator.wait_final(op, KEYGEN).await);
    }
    let signed_by_c = operator.operation(&needs_c).await;
    let (vault, key) = (
        signed_by_c.vault_id.clone(),
        signed_by_c.result.unwrap().public_key.unwrap(),
    );

    // A signature Alice approves: it completes, and the page shows the signature.
    let message = b"pay invoice 2026-114 to Acme Ltd";
    let requested = tokio::task::block_in_place(|| {
        page.as_operator(
            json!({"action": "request-message", "vaultId": vault, "shot": "request",
            "message": std::str::from_utf8(message).unwrap()}),
        )
    });
    let op = requested["operationId"].as_str().unwrap().to_owned();
    human_request(&operator, &op, c).await;
    let seen = tokio::task::block_in_place(|| page.step("approve", &op, c, "Completed", Some("signature")));
    let signed = operator.wait_final(&op, Duration::from_secs(60)).await;
    completed(&signed);
    verify_ed25519(&key, message, &signed);
    assert_eq!(
        seen["message"], "pay invoice 2026-114 to Acme Ltd",
        "the page shows the message"
    );
    assert!(
        seen["verified"]
            .as_str()
            .unwrap_or_default()
            .starts_with("✓ Verified in this browser"),
        "the page checks the signature itself: {seen}"
    );
    assert_eq!(
        seen["signature"].as_str(),
        signed.result.as_ref().and_then(|r| r.signature.as_deref()),
        "the page shows the signature"
    );

    // A signature Alice rejects: nothing is signed.
    let op = operator
        .request_signature(
            &vault,
            json!({"message": hex::encode(b"send everything to mallory")}),
        )
        .await;
    human_request(&operator, &op, c).await;
    tokio::task::block_in_place(|| page.step("reject", &op, c, "Rejected", Some("rejection")));
    let rejected = operator.wait_final(&op, Duration::from_secs(60)).await;
    assert_eq!(rejected.state, "Rejected");
    assert!(rejected.result.is_none());

    // The other pages, for the README.
    tokio::task::block_in_place(|| page.step("look", "", "", "", Some("1")));
    drop(webhook);
}

/// The console builds EIP-1559 transactions itself (`assets/eth.js`, no dependency): what it
/// builds must decode, field for field, as alloy (and so the coordinator and the devices)
/// reads it. Long data exercises RLP's long-length form.
#[test]
fn the_consoles_ethereum_transactions_decode_as_alloy_reads_them() {
    if Command::new("node").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
            "bash .ci/run installs node"
        );
        println!("SKIPPED: node is not installed");
        return;
    }
    let module = repo_root().join("crates/coordinator/src/console/assets/eth.js");
    let data = "ab".repeat(100);
    let script = format!(
        "import {{ eip1559 }} from {url:?}; console.log(eip1559({{ to: '0x00000000219ab540356cBB839Cbe05303d7705Fa', value: '1.5', chain: '11155111', nonce: '7', gas: '90000', fee: '30.5', tip: '1.25', data: '0x{data}' }}))",
        url = format!("file://{}", module.display())
    );
    let out = Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let raw = String::from_utf8(out.stdout).unwrap();
    let bytes = hex::decode(raw.trim().trim_start_matches("0x")).unwrap();
    let tx = vsigner_approval::EthTransaction::decode(&bytes).unwrap();
    let t = tx.transaction();
    assert_eq!(tx.chain_id(), 11_155_111);
    assert_eq!(t.nonce, 7);
    assert_eq!(t.gas_limit, 90_000);
    assert_eq!(t.max_fee_per_gas, 30_500_000_000);
    assert_eq!(t.max_priority_fee_per_gas, 1_250_000_000);
    assert_eq!(
        tx.to().map(|a| a.to_checksum(None)),
        Some("0x00000000219ab540356cBB839Cbe05303d7705Fa".to_owned())
    );
    assert_eq!(
        tx.value(),
        alloy_primitives::U256::from(1_500_000_000_000_000_000u128)
    );
    assert_eq!(hex::encode(&t.input), data);
    assert!(t.access_list.is_empty());
}
