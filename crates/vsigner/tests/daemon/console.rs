//! The web console in real Chromium (Debian's, driven by playwright-core from npm), against
//! the real daemons. Alice registers a passkey in the page; Chromium's virtual
//! authenticator makes it, holds it and verifies her (it stands in for the biometric
//! check). The page's passkeys file configures device c, whose vote comes from her
//! (`ApprovalMode = Human`), checked by c itself.
//!
//! Olivia, an operator, creates a mixed 2-of-3 secp256k1 vault and an ed25519 2-of-2 vault
//! {a, c} with the page's form. Alice, an approver, approves c's part of both key
//! generations in the page and watches each complete live (server-sent events, no reload).
//! Olivia requests a message's signature with the form; Alice approves it, it completes,
//! the page verifies it, and it verifies here; she rejects another, which ends Rejected with
//! no signature. Olivia requests a 0.5 ETH EIP-1559 payment from the mixed vault, which b's
//! approver refuses: a forged request shown to Alice gets an answer c refuses; her approval
//! of the real one signs it, and the page verifies it and recovers the vault's address.
//! Olivia reshares the 2-of-2 to a 2-of-3 with the form. With
//! `VSIGNER_UPDATE_SCREENSHOTS=1` the pages are saved under docs/console/ for the README.
//!
//! The console is served apart from the coordinator (`vsigner console`), as a device whose
//! people approve in a page wants it: c takes it as `HumanApprovalOrigin` with no
//! `ApprovalAcceptInsecure` (docs/approvals.md: the page people approve on is trusted).

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

/// `vsigner console` in front of the coordinator at `coordinator_url`; its origin.
fn start_console(coordinator_url: &str) -> (Proc, String) {
    let console = Proc::spawn(
        "console",
        Command::new(bin()).args([
            "console",
            "--coordinator",
            coordinator_url,
            "--listen",
            "127.0.0.1:0",
        ]),
    );
    let start = std::time::Instant::now();
    loop {
        let text = console.output.text();
        if let Some(at) = text.split("serving http://").nth(1) {
            let origin = format!("http://{}", at.split('/').next().unwrap());
            return (console, origin);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the console did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
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
    // The console people approve on is served apart from the coordinator (`vsigner
    // console`): its page is this binary's, not the coordinator's to change.
    // Browsers offer passkeys on http:// only for localhost, which it prints.
    let (_console, base) = start_console(&coordinator_url);
    let webhook = start_webhook();
    // b's approver is stricter: transfers above 0.1 ETH need someone else's yes.
    let risk_desk = start_webhook_with_limit(100_000_000_000_000_000);
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
    // Alice proves the file's entry by possession, on the organisation's own console: her
    // authenticator signs a fresh challenge, checked in the page against the entry's key.
    let prove = |file: &str, shot: Option<&str>| {
        tokio::task::block_in_place(|| {
            page.run(
                json!({"name": "alice", "password": page.password, "passkey": page.passkey,
                "action": "prove", "file": file, "shot": shot}),
            )
        })
    };
    let proven = prove(&file, Some("proof"));
    assert!(
        proven["proof"].as_str().unwrap().starts_with("✓ alice ("),
        "the page proves Alice's entry: {proven}"
    );
    assert!(
        proven["summary"]
            .as_str()
            .unwrap()
            .starts_with("Every entry is proven"),
        "{proven}"
    );
    // The same file with another key beside Alice's credential id (what a coordinator
    // writing the entries could do) is refused.
    let mut forged: Value = serde_json::from_str(&file).unwrap();
    let other = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = other.verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let ec2 = &mut forged["passkeys"][0]["passkey"]["cred"]["cred"]["key"]["EC_EC2"];
    assert!(
        ec2.is_object(),
        "Chromium's virtual authenticator makes ES256 keys: {file}"
    );
    ec2["x"] = json!(b64(point.x().unwrap()));
    ec2["y"] = json!(b64(point.y().unwrap()));
    let refused = prove(&forged.to_string(), None);
    assert!(
        refused["proof"]
            .as_str()
            .unwrap()
            .contains("its signature does not verify under the file's public key"),
        "the page refuses a forged entry: {refused}"
    );

    let mut signers = signers_with_people_for_c(
        root.path(),
        &org,
        (&coordinator_url, &broker_url),
        &webhook,
        &file,
        &base,
        // The secp256k1 vault's aux-info, from the committed public test primes.
        &[(0, 2), (2, 2), (4, 2)],
    );
    signers[1].tweak(|cfg| {
        cfg["ExternalTransactionApprovalURL"] = json!(format!("{}/approve", risk_desk.url));
        cfg["ExternalReshareApprovalURL"] = json!(format!("{}/approve", risk_desk.url));
        cfg["ApprovalHTTPPublicKeyHex"] = json!(risk_desk.public_key_hex);
    });
    for s in &mut signers {
        s.start();
    }
    let abc = operator.wait_devices(&["a", "b", "c"]).await;
    let c = abc[2].as_str();

    // Key generations: Alice approves c's part of each in the page.
    // Olivia, an operator, creates both vaults in the page: a mixed 2-of-3 secp256k1 vault
    // (a and b approve by webhook, c by Alice) and an ed25519 2-of-2 of a and c that needs
    // Alice.
    let created = tokio::task::block_in_place(|| {
        page.as_operator(json!({"action": "new-vault", "shot": "new-vault", "vault": {
            "name": "treasury", "scheme": "secp256k1", "devices": ["a", "b", "c"], "threshold": 2}}))
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
        assert!(seen["differs"].is_null(), "an honest page has no warning: {seen}");
        assert!(seen["request"].as_str().unwrap().contains(op.as_str()), "{seen}");
        completed(&operator.wait_final(op, KEYGEN).await);
    }
    let treasury = operator.operation(&mixed).await;
    let (treasury, treasury_key) = (
        treasury.vault_id.clone(),
        treasury.result.unwrap().public_key.unwrap(),
    );
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
    // A coordinator that tells the page another message than the device's request (its own
    // fields, not the request: an answer would then sign the real request) is caught: the
    // page warns and shows what the request says.
    let misled = tokio::task::block_in_place(|| {
        page.run(
            json!({"name": "alice", "password": page.password, "passkey": page.passkey,
            "action": "read", "operationId": op, "deviceId": c,
            "tamper": {"from": "\"payload\":\"", "to": "\"payload\":\"00"}}),
        )
    });
    assert!(
        misled["differs"]
            .as_str()
            .unwrap_or_default()
            .contains("what is signed"),
        "the page warns that the coordinator's account differs: {misled}"
    );
    assert!(
        misled["summary"]
            .as_str()
            .unwrap()
            .contains("pay invoice 2026-114 to Acme Ltd"),
        "the page shows the device's request: {misled}"
    );
    let seen = tokio::task::block_in_place(|| page.step("approve", &op, c, "Completed", Some("signature")));
    assert!(seen["differs"].is_null(), "an honest page has no warning: {seen}");
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

    // An EIP-1559 payment of 0.5 ETH from the treasury: a's approver allows it, b's refuses
    // (above its 0.1 ETH), so it is Alice's to decide.
    let requested = tokio::task::block_in_place(|| {
        page.as_operator(
            json!({"action": "request-eth", "vaultId": treasury, "shot": "request-eth",
            "tx": {"to": "0x00000000219ab540356cBB839Cbe05303d7705Fa", "value": "0.5", "chain": "11155111",
                   "nonce": "7", "gas": "21000", "fee": "30", "tip": "1.5"}}),
        )
    });
    let op = requested["operationId"].as_str().unwrap().to_owned();
    let request = human_request(&operator, &op, c).await;
    assert!(
        request.contains("\"amountOriginal\":\"500000000000000000\""),
        "{request}"
    );
    // A lying coordinator shows Alice 0.05 ETH instead: she approves what she is shown, her
    // passkey signs those bytes, and c, checking the answer against its own request,
    // refuses it (twice: one reading began after the answer was stored). No vote, no
    // signature.
    let refused = "does not verify for this request: The client response challenge differs";
    let before = signers[2].all_output().matches(refused).count();
    let seen = tokio::task::block_in_place(|| {
        page.run(
            json!({"name": "alice", "password": page.password, "passkey": page.passkey,
            "action": "approve", "operationId": op, "deviceId": c, "expect": "",
            "tamper": {"from": "500000000000000000", "to": "50000000000000000"}}),
        )
    });
    assert!(
        seen["summary"].as_str().unwrap().contains("Amount0.05 ETH"),
        "the page showed the forged request: {seen}"
    );
    let start = std::time::Instant::now();
    while signers[2].all_output().matches(refused).count() < before + 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "c never refused the forged approval: {}",
            signers[2].all_output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(operator.operation(&op).await.state, "AwaitingApproval");
    let cast = super::people::votes(&operator, &op).await;
    assert!(
        !cast.iter().any(|(d, _)| d == c),
        "c voted on a forged approval: {cast:?}"
    );
    assert!(
        cast.iter().any(|(d, v)| d == abc[1].as_str() && v == "reject"),
        "b's approver refused the amount: {cast:?}"
    );
    // Alice's approval of the real request signs it; the page checks the signature itself
    // and recovers the vault's address from it.
    let seen =
        tokio::task::block_in_place(|| page.step("approve", &op, c, "Completed", Some("eth-signature")));
    let signed = operator.wait_final(&op, Duration::from_secs(120)).await;
    completed(&signed);
    let raw = operator
        .gql(
            "query($id: ID!) { operation(id: $id) { sign { payload } vault { ethereumAddress } } }",
            json!({"id": op}),
        )
        .await;
    let tx = hex::decode(raw["operation"]["sign"]["payload"].as_str().unwrap()).unwrap();
    let result = signed.result.as_ref().unwrap();
    super::verify_secp256k1_parts(
        &treasury_key,
        &alloy_primitives::keccak256(&tx).0,
        result.signature.as_deref().unwrap(),
        result.recovery_id.unwrap() as u8,
    );
    let address = raw["operation"]["vault"]["ethereumAddress"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let verified = seen["verified"].as_str().unwrap_or_default();
    assert!(
        verified.starts_with("✓ Verified in this browser") && verified.contains(&address),
        "the page checks the signature and its signer itself: {seen}"
    );

    // Olivia reshares the 2-of-2 {a, c} vault to a 2-of-3 {a, b, c} with the form; Alice
    // approves c's part; the key stays.
    let requested = tokio::task::block_in_place(|| {
        page.as_operator(json!({"action": "reshare", "vaultId": vault, "shot": "reshare",
            "devices": ["a", "b", "c"], "threshold": 2}))
    });
    let op = requested["operationId"].as_str().unwrap().to_owned();
    human_request(&operator, &op, c).await;
    tokio::task::block_in_place(|| page.step("approve", &op, c, "Completed", None));
    let reshared = operator.wait_final(&op, KEYGEN).await;
    completed(&reshared);
    let now = operator
        .gql(
            "query($id: ID!) { vault(id: $id) { publicKey keyGeneration signers { deviceId } } }",
            json!({"id": vault}),
        )
        .await;
    assert_eq!(
        now["vault"]["publicKey"],
        json!(key),
        "a reshare keeps the vault's key"
    );
    assert_eq!(now["vault"]["keyGeneration"], 1, "{now}");
    assert_eq!(now["vault"]["signers"].as_array().unwrap().len(), 3, "{now}");

    // Olivia changes her password on her account page; the new one signs her in.
    let new_password = "correct horse battery staple";
    let changed = tokio::task::block_in_place(|| {
        page.as_operator(json!({"action": "password", "newPassword": new_password, "shot": "account"}))
    });
    assert!(
        changed["status"]
            .as_str()
            .unwrap_or_default()
            .contains("was changed"),
        "{changed}"
    );
    page.operator_password = new_password.to_owned();
    let again = tokio::task::block_in_place(|| page.as_operator(json!({"action": "whoami"})));
    assert_eq!(again["signedInAs"], "olivia");

    // The other pages, for the README.
    let looked = tokio::task::block_in_place(|| page.step("look", "", "", "", Some("1")));
    let audit = looked["audit"].as_str().unwrap_or_default();
    assert!(
        audit.starts_with("✓ ") && !audit.starts_with("✓ 0 device statements"),
        "the page verifies every device signature in the audit log: {looked}"
    );
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

/// `vsigner console` refuses, in one sentence naming the fix, what would be unsafe: a
/// coordinator over plain HTTP on another machine, or listening off loopback without the
/// origin people open.
#[test]
fn the_console_apart_refuses_an_unsafe_start() {
    for (args, says) in [
        (
            &[
                "--coordinator",
                "http://coordinator.example:8080",
                "--listen",
                "127.0.0.1:0",
            ][..],
            "plain HTTP only to this machine",
        ),
        (
            &["--coordinator", "http://127.0.0.1:8080", "--listen", "0.0.0.0:0"][..],
            "give --origin",
        ),
        (
            &["--coordinator", "ftp://127.0.0.1", "--listen", "127.0.0.1:0"][..],
            "http(s)://host:port",
        ),
    ] {
        let out = Command::new(bin()).arg("console").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
