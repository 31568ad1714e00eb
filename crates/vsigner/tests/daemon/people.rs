//! People in the loop, through the real daemons: device c's vote comes from people
//! (`ApprovalMode = Human`), who answer with passkeys. The passkeys here are software keys
//! that register and assert through webauthn-rs-core's real checks (the console's browser
//! tests use Chromium's virtual authenticator instead).
//!
//! - A mixed 2-of-3 ed25519 vault (a and b approve by webhook, c by people) and a 2-of-2
//!   vault {a, c} that needs the human are created once Alice approves c's keygens.
//! - Answers a lying coordinator could relay (a stranger's passkey's answer relabelled as
//!   Alice's, Alice's approval of another request, Alice's rejection relabelled as an
//!   approval) are refused by c itself: no vote, nothing signed. Alice's real approval then
//!   gets the signature.
//! - Bob's rejection leaves Alice free to approve; when she rejects too, c votes reject and
//!   nothing is signed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use url::Url;
use vsigner_approval::human::soft_passkey::{passkeys_file, SoftPasskey};
use vsigner_approval::human::Verdict;

use super::harness::*;
use super::{completed, verify_ed25519, KEYGEN};

const ORIGIN: &str = "https://console.vsigner.test";
const RP_ID: &str = "console.vsigner.test";

/// The request `device` shows people about operation `op`, once it is posted.
pub(crate) async fn human_request(operator: &Operator, op: &str, device: &str) -> String {
    let start = Instant::now();
    loop {
        let data = operator
            .gql(
                "query($id: ID!) { operation(id: $id) { state rejectionReason votes { deviceId vote } humanApprovals { deviceId request } } }",
                json!({"id": op}),
            )
            .await;
        let posted = data["operation"]["humanApprovals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["deviceId"] == device)
            .map(|r| r["request"].as_str().unwrap().to_owned());
        if let Some(request) = posted {
            return request;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "device {device} showed people nothing about {op}: {data}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Delivers an answer as the console would (`answerAsPerson`).
async fn deliver(operator: &Operator, op: &str, device: &str, verdict: Verdict, assertion: &str) {
    let data = operator
        .gql(
            "mutation($o: ID!, $d: ID!, $v: String!, $a: String!) { answerAsPerson(operationId: $o, deviceId: $d, verdict: $v, assertion: $a) { seq } }",
            json!({"o": op, "d": device, "v": verdict.as_str(), "a": assertion}),
        )
        .await;
    assert!(data["answerAsPerson"]["seq"].as_i64().is_some(), "{data}");
}

/// `person` answers `verdict` on what `device` shows about `op`.
async fn answer(operator: &Operator, op: &str, device: &str, person: &SoftPasskey, verdict: Verdict) {
    let request = human_request(operator, op, device).await;
    let origin = Url::parse(ORIGIN).unwrap();
    let answer = person.answer(verdict, request.as_bytes(), &origin, RP_ID);
    deliver(operator, op, device, verdict, &answer.assertion).await;
}

/// Signers s1, s2, s3 with one device each, a, b and c: a and b approve by `webhook`; c's
/// vote comes from people (`ApprovalMode = Human`) with the passkeys of `passkeys_file`
/// (its text), on the console at `origin`; `primes[k]` = (skip, count) of the test pool
/// imported into each (count 0: none). Not started.
pub(crate) fn signers_with_people_for_c(
    root: &std::path::Path,
    org: &Org,
    (coordinator_url, broker_url): (&str, &str),
    webhook: &Webhook,
    passkeys: &str,
    origin: &str,
    primes: &[(usize, usize)],
) -> Vec<Signer> {
    let signers = Signer::one_device_each(
        root,
        org,
        coordinator_url,
        broker_url,
        webhook,
        &["a", "b", "c"],
        primes,
    );
    let passkeys_path = root.join("passkeys.json");
    std::fs::write(&passkeys_path, passkeys).unwrap();
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
        o.insert("HumanApprovalOrigin".into(), json!(origin));
    });
    signers
}

/// The votes on `op` as (device, vote).
pub(crate) async fn votes(operator: &Operator, op: &str) -> Vec<(String, String)> {
    let data = operator
        .gql(
            "query($id: ID!) { operation(id: $id) { votes { deviceId vote } } }",
            json!({"id": op}),
        )
        .await;
    data["operation"]["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["deviceId"].as_str().unwrap().to_owned(),
                v["vote"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_approve_with_passkeys_and_the_device_refuses_forged_answers() {
    let root = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    let webhook = start_webhook();
    // Alice and Bob register passkeys; c accepts either (any 1 of 2).
    let origin = Url::parse(ORIGIN).unwrap();
    let (alice, bob) = (SoftPasskey::new(), SoftPasskey::new());
    let passkeys = [
        alice.register("Alice", &origin, RP_ID).unwrap(),
        bob.register("Bob", &origin, RP_ID).unwrap(),
    ];
    let mut signers = signers_with_people_for_c(
        root.path(),
        &org,
        (&coordinator_url, &broker_url),
        &webhook,
        &passkeys_file(&passkeys),
        ORIGIN,
        &[(0, 0); 3],
    );
    for s in &mut signers {
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let abc = operator.wait_devices(&["a", "b", "c"]).await;
    let c = abc[2].as_str();

    // Key generation needs every member: c's needs a person.
    let mixed = operator.create_vault("mixed", "ed25519", 2, &abc).await;
    let needs_c = operator
        .create_vault("needs-c", "ed25519", 2, &[abc[0].clone(), abc[2].clone()])
        .await;
    for op in [&mixed, &needs_c] {
        let request: Value = serde_json::from_str(&human_request(&operator, op, c).await).unwrap();
        assert_eq!(request["id"], json!(op), "the request names its operation");
        assert_eq!(request["__typename"], "OperationCreateVault_v3", "{request}");
        answer(&operator, op, c, &alice, Verdict::Approve).await;
    }
    let mixed_op = operator.wait_final(&mixed, KEYGEN).await;
    completed(&mixed_op);
    let needs_c_op = operator.wait_final(&needs_c, KEYGEN).await;
    completed(&needs_c_op);
    let (mixed_vault, mixed_key) = (
        mixed_op.vault_id.clone(),
        mixed_op.result.unwrap().public_key.unwrap(),
    );
    let (vault, key) = (
        needs_c_op.vault_id.clone(),
        needs_c_op.result.unwrap().public_key.unwrap(),
    );

    // In the mixed vault, a and b approve without people.
    let message = b"pay the auditors";
    let op = operator
        .signed(&mixed_vault, json!({"message": hex::encode(message)}))
        .await;
    verify_ed25519(&mixed_key, message, &op);

    // What a lying coordinator could relay: none of it is a vote.
    let message = b"move 10 ETH to cold storage";
    let op = operator
        .request_signature(&vault, json!({"message": hex::encode(message)}))
        .await;
    let request = human_request(&operator, &op, c).await;
    // The coordinator takes answers only by the passkeys c named, so the stranger's answer
    // is relabelled with Alice's credential id, as a lying coordinator could.
    let stranger = SoftPasskey::new();
    let mut as_alice: Value = serde_json::from_str(
        &stranger
            .answer(Verdict::Approve, request.as_bytes(), &origin, RP_ID)
            .assertion,
    )
    .unwrap();
    as_alice["id"] = json!(passkeys[0].id());
    as_alice["rawId"] = json!(passkeys[0].id());
    let forged = [
        (
            Verdict::Approve,
            as_alice.to_string(),
            "Alice's approve does not verify for this request: Authentication has failed",
        ),
        (
            Verdict::Approve,
            alice
                .answer(
                    Verdict::Approve,
                    request.replacen(&op, "op_another", 1).as_bytes(),
                    &origin,
                    RP_ID,
                )
                .assertion,
            "Alice's approve does not verify for this request: The client response challenge differs",
        ),
        (
            Verdict::Approve,
            alice
                .answer(Verdict::Reject, request.as_bytes(), &origin, RP_ID)
                .assertion,
            "Alice's approve does not verify for this request: The client response challenge differs",
        ),
    ];
    // Each replaces the one before (the coordinator keeps a passkey's latest answer), so
    // each is delivered once c has read the one before: twice, so that one reading began
    // after the delivery.
    for (verdict, assertion, why) in &forged {
        let before = signers[2].all_output().matches(why).count();
        deliver(&operator, &op, c, *verdict, assertion).await;
        let start = Instant::now();
        while signers[2].all_output().matches(why).count() < before + 2 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "c never refused the answer with {why:?}: {}",
                signers[2].all_output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let now = operator.operation(&op).await;
    assert_eq!(
        now.state, "AwaitingApproval",
        "forged answers moved the operation"
    );
    let cast = votes(&operator, &op).await;
    assert!(
        !cast.iter().any(|(d, _)| d == c),
        "c voted on forged answers: {cast:?}"
    );
    // Alice's own approval signs.
    answer(&operator, &op, c, &alice, Verdict::Approve).await;
    let signed = operator.wait_final(&op, Duration::from_secs(60)).await;
    completed(&signed);
    verify_ed25519(&key, message, &signed);

    // Bob rejects: c votes reject and nothing is signed.
    let op = operator
        .request_signature(
            &vault,
            json!({"message": hex::encode(b"send everything to mallory")}),
        )
        .await;
    // Alice may still approve after Bob's rejection (any 1 of 2): no vote yet.
    answer(&operator, &op, c, &bob, Verdict::Reject).await;
    let start = Instant::now();
    while !signers[2]
        .all_output()
        .contains("0 of 1 approvals; rejected by Bob")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "c never read Bob's rejection"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(operator.operation(&op).await.state, "AwaitingApproval");
    // Alice rejects too: one approval can no longer come.
    answer(&operator, &op, c, &alice, Verdict::Reject).await;
    let rejected = operator.wait_final(&op, Duration::from_secs(60)).await;
    assert_eq!(rejected.state, "Rejected", "{rejected:?}");
    assert!(rejected.result.is_none(), "a rejected operation has no signature");
    let cast = votes(&operator, &op).await;
    assert!(cast.contains(&(c.to_owned(), "reject".to_owned())), "{cast:?}");
}
