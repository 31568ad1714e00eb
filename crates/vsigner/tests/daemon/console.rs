//! The web console in real Chromium (Debian's, driven by playwright-core from npm), against
//! the real daemons. Chromium's virtual authenticator holds Alice's passkey and verifies
//! her (it stands in for the biometric check); device c's vote comes from her
//! (`ApprovalMode = Human`), checked by c itself.
//!
//! Alice signs in as an approver, approves c's key generations of a mixed 2-of-3 vault and
//! of a 2-of-2 vault {a, c} in the page, and watches each complete live (server-sent
//! events, no reload). She approves a signature, which completes and verifies here; she
//! rejects another, which ends Rejected with no signature. With `VSIGNER_UPDATE_SCREENSHOTS=1`
//! the pages are saved under docs/console/ for the README.
//!
//! The console is served by the coordinator here, so c's configuration must acknowledge
//! that with `ApprovalAcceptInsecure = true` (docs/approvals.md: the page people approve on
//! is trusted).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use url::Url;
use vsigner_approval::human::soft_passkey::{passkeys_file, SoftPasskey};

use super::harness::*;
use super::people::human_request;
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
    passkey: Value,
    screenshots: Option<PathBuf>,
}

impl Page {
    /// Runs one browser step; returns what the page showed.
    fn step(&self, action: &str, operation: &str, device: &str, expect: &str, shot: Option<&str>) -> Value {
        let step = json!({
            "base": self.base, "organisationId": self.org, "name": "alice", "password": self.password,
            "passkey": self.passkey, "action": action, "operationId": operation, "deviceId": device,
            "expect": expect, "screenshots": self.screenshots, "shot": shot,
        });
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
            "browser step {action} {operation}: {}\n{stdout}",
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
    let origin = Url::parse(&base).unwrap();
    let webhook = start_webhook();
    let mut signers: Vec<Signer> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(k, name)| {
            Signer::configure(
                &format!("s{}", k + 1),
                root.path(),
                &org,
                &coordinator_url,
                &broker_url,
                &webhook,
                &[name],
                None,
            )
        })
        .collect();
    // Alice's passkey: registered through webauthn-rs-core's checks, then handed to
    // Chromium's virtual authenticator, which answers with it.
    let alice = SoftPasskey::new();
    let registered = alice.register("Alice", &origin, "localhost").unwrap();
    let passkeys_path = root.path().join("passkeys.json");
    std::fs::write(&passkeys_path, passkeys_file(&[registered])).unwrap();
    signers[2].tweak(|cfg| {
        let o = cfg.as_object_mut().unwrap();
        for key in [
            "ExternalTransactionApprovalURL",
            "ExternalReshareApprovalURL",
            "ApprovalHTTPPublicKeyHex",
        ] {
            o.remove(key);
        }
        o.insert("ApprovalMode".into(), json!("Human"));
        o.insert(
            "HumanApprovalPasskeysFile".into(),
            json!(passkeys_path.to_str().unwrap()),
        );
        o.insert("HumanApprovalOrigin".into(), json!(base));
        o.insert("APIBaseURL".into(), json!(base));
        o.insert("ApprovalAcceptInsecure".into(), json!(true));
    });
    for s in &mut signers {
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let abc = operator.wait_devices(&["a", "b", "c"]).await;
    let c = abc[2].as_str();
    let made = operator
        .gql(
            "mutation { createConsoleUser(name: \"alice\", role: \"approver\") { password } }",
            json!({}),
        )
        .await;
    let screenshots = std::env::var_os("VSIGNER_UPDATE_SCREENSHOTS").map(|_| {
        let dir = repo_root().join("docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let page = Page {
        chromium,
        modules,
        base: base.clone(),
        org: org.id.clone(),
        password: made["createConsoleUser"]["password"].as_str().unwrap().to_owned(),
        passkey: json!({"credentialId": alice.credential_id(), "privateKey": alice.private_key_pkcs8_base64()}),
        screenshots,
    };

    // Key generations: Alice approves c's part of each in the page.
    let mixed = operator.create_vault("treasury", "ed25519", 2, &abc).await;
    let needs_c = operator
        .create_vault("alice-must-sign", "ed25519", 2, &[abc[0].clone(), abc[2].clone()])
        .await;
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
    let op = operator
        .request_signature(&vault, json!({"message": hex::encode(message)}))
        .await;
    human_request(&operator, &op, c).await;
    let seen = tokio::task::block_in_place(|| page.step("approve", &op, c, "Completed", Some("signature")));
    let signed = operator.wait_final(&op, Duration::from_secs(60)).await;
    completed(&signed);
    verify_ed25519(&key, message, &signed);
    assert_eq!(
        seen["message"], "pay invoice 2026-114 to Acme Ltd",
        "the page shows the message"
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
