//! `Human` mode: people's passkey answers, checked by the device against its own passkeys
//! and its own request bytes. The answers come from software passkeys that register and
//! assert through webauthn-rs-core's real checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use url::Url;
use vsigner_approval::human::soft_passkey::{passkeys_file, SoftPasskey};
use vsigner_approval::human::{DeskFuture, HumanAnswer, Passkey, Verdict};
use vsigner_approval::{
    AnyApprover, ApprovalConfig, ApprovalMode, ApprovalValues, ConfigError, DeviceKey, HumanApprover,
    HumanConfig, HumanDesk, Vote,
};

const ORIGIN: &str = "https://console.example.com";
const RP_ID: &str = "console.example.com";

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

/// What was posted: the operation, the request bytes, the passkeys named.
type Posted = (String, Vec<u8>, Vec<String>);

/// A desk that keeps what was posted and hands out the answers it is given.
#[derive(Debug, Default)]
struct Desk {
    posted: Mutex<Vec<Posted>>,
    answers: Mutex<Vec<HumanAnswer>>,
}

impl HumanDesk for Desk {
    fn post<'a>(
        &'a self,
        operation_id: &'a str,
        request: &'a [u8],
        passkeys: &'a [String],
    ) -> DeskFuture<'a, ()> {
        self.posted
            .lock()
            .unwrap()
            .push((operation_id.into(), request.to_vec(), passkeys.to_vec()));
        Box::pin(async { Ok(()) })
    }
    fn answers<'a>(&'a self, _operation_id: &'a str) -> DeskFuture<'a, Vec<HumanAnswer>> {
        let answers = self.answers.lock().unwrap().clone();
        Box::pin(async move { Ok(answers) })
    }
}

struct People {
    keys: Vec<SoftPasskey>,
    passkeys: Vec<Passkey>,
    file: tempfile::NamedTempFile,
}

fn people(names: &[&str]) -> People {
    let keys: Vec<SoftPasskey> = names.iter().map(|_| SoftPasskey::new()).collect();
    let passkeys: Vec<Passkey> = keys
        .iter()
        .zip(names)
        .map(|(k, n)| k.register(n, &origin(), RP_ID).unwrap())
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), passkeys_file(&passkeys)).unwrap();
    People { keys, passkeys, file }
}

fn values(file: &str, quorum: Option<&str>) -> ApprovalValues {
    ApprovalValues {
        approval_mode: Some("Human".into()),
        human_approval_passkeys_file: Some(file.into()),
        human_approval_quorum: quorum.map(Into::into),
        human_approval_origin: Some(ORIGIN.into()),
        ..Default::default()
    }
}

fn approver(people: &People, quorum: usize) -> (HumanApprover, Arc<Desk>) {
    let q = quorum.to_string();
    let config =
        ApprovalConfig::from_values(&values(people.file.path().to_str().unwrap(), Some(&q))).unwrap();
    let vsigner_approval::ModeConfig::Human(human) = config.mode else {
        panic!("not Human")
    };
    assert_eq!(human.passkeys, people.passkeys);
    let desk = Arc::new(Desk::default());
    (HumanApprover::new(human, desk.clone()), desk)
}

#[tokio::test]
async fn a_person_approves_the_exact_request_posted() {
    let people = people(&["Alice"]);
    let (approver, desk) = approver(&people, 1);
    let request = common::sign_tx("treasury", 1_000);
    let body = request.to_json_bytes();

    let waiting = approver.decide(&request).await;
    assert!(!waiting.is_approval());
    assert!(waiting.retry, "no answer yet: asked again later, {waiting:?}");
    assert!(
        waiting.reason.contains("waiting for people: 0 of 1"),
        "{}",
        waiting.reason
    );
    let posted = desk.posted.lock().unwrap().clone();
    assert_eq!(
        posted,
        vec![(
            request.operation_id.clone(),
            body.clone(),
            vec![people.passkeys[0].id()]
        )],
        "the exact bytes, and the passkeys whose answers are read"
    );

    desk.answers
        .lock()
        .unwrap()
        .push(people.keys[0].answer(Verdict::Approve, &body, &origin(), RP_ID));
    let decided = approver.decide(&request).await;
    assert!(decided.is_approval(), "{decided:?}");
    assert_eq!(decided.mode, ApprovalMode::Human);
}

#[tokio::test]
async fn a_person_rejects_and_the_vote_is_reject() {
    let people = people(&["Alice"]);
    let (approver, desk) = approver(&people, 1);
    let request = common::sign_tx("treasury", 1_000);
    let body = request.to_json_bytes();
    desk.answers
        .lock()
        .unwrap()
        .push(people.keys[0].answer(Verdict::Reject, &body, &origin(), RP_ID));
    let decided = approver.decide(&request).await;
    assert_eq!(decided.vote, Vote::Reject);
    assert!(
        !decided.failed && !decided.retry,
        "a person's rejection is final: {decided:?}"
    );
    assert_eq!(decided.reason, "rejected by Alice");
}

/// What the coordinator could try with an answer: none of it approves.
#[test]
fn forged_or_moved_answers_are_refused() {
    let people = people(&["Alice"]);
    let (approver, _) = approver(&people, 1);
    let body = common::sign_tx("treasury", 1_000).to_json_bytes();
    let other = common::sign_tx("treasury", 1_000_000).to_json_bytes();
    let alice = &people.keys[0];
    let refused = |answer: HumanAnswer, why: &str| {
        let r = approver.check(&body, &answer).expect_err(why);
        let d = approver.tally("op", &body, &[answer]);
        assert!(
            !d.is_approval() && d.vote == Vote::Reject && d.retry,
            "{why}: {d:?}"
        );
        r.0
    };

    // An assertion over another request (a larger amount).
    let r = refused(
        alice.answer(Verdict::Approve, &other, &origin(), RP_ID),
        "another request",
    );
    assert!(r.contains("Alice's approve does not verify"), "{r}");
    // A rejection relabelled as an approval by the coordinator.
    let mut flipped = alice.answer(Verdict::Reject, &body, &origin(), RP_ID);
    flipped.verdict = Verdict::Approve;
    refused(flipped, "verdict flipped");
    // A passkey this device does not accept (the coordinator's own).
    let stranger = SoftPasskey::new();
    let r = refused(
        stranger.answer(Verdict::Approve, &body, &origin(), RP_ID),
        "unknown passkey",
    );
    assert!(r.contains("not one of this device's"), "{r}");
    // Alice's key on a phishing origin.
    let phish = Url::parse("https://console.example.com.evil.test").unwrap();
    refused(
        alice.answer(Verdict::Approve, &body, &phish, RP_ID),
        "other origin",
    );
    // Another relying party.
    refused(
        alice.answer(Verdict::Approve, &body, &origin(), "evil.test"),
        "other rp id",
    );
    // Alice's key without user verification (no biometric).
    let mut no_uv = SoftPasskey::new();
    no_uv.user_verified = true;
    let passkey = no_uv.register("Bob", &origin(), RP_ID).unwrap();
    let mut uv_config = approver.config().clone();
    uv_config.passkeys = vec![passkey];
    let bob_approver = HumanApprover::new(uv_config, Arc::new(Desk::default()));
    no_uv.user_verified = false;
    let r = bob_approver
        .check(&body, &no_uv.answer(Verdict::Approve, &body, &origin(), RP_ID))
        .unwrap_err();
    assert!(r.0.contains("Bob's approve does not verify"), "{r}");
    // Alice's key inside another site's frame.
    let mut framed = SoftPasskey::new();
    let passkey = framed.register("Carol", &origin(), RP_ID).unwrap();
    let mut framed_config = approver.config().clone();
    framed_config.passkeys = vec![passkey];
    let carol_approver = HumanApprover::new(framed_config, Arc::new(Desk::default()));
    assert!(carol_approver
        .check(&body, &framed.answer(Verdict::Approve, &body, &origin(), RP_ID))
        .is_ok());
    framed.cross_origin = true;
    let r = carol_approver
        .check(&body, &framed.answer(Verdict::Approve, &body, &origin(), RP_ID))
        .unwrap_err();
    assert!(r.0.contains("another site's frame"), "{r}");
    // Garbage, and a huge body.
    refused(
        HumanAnswer {
            verdict: Verdict::Approve,
            assertion: "{}".into(),
        },
        "garbage",
    );
    refused(
        HumanAnswer {
            verdict: Verdict::Approve,
            assertion: "x".repeat(100_000),
        },
        "huge",
    );
    // The genuine answer still approves.
    assert!(approver
        .check(&body, &alice.answer(Verdict::Approve, &body, &origin(), RP_ID))
        .is_ok());
}

#[test]
fn a_quorum_counts_distinct_people_and_a_rejection_wins_over_an_approval() {
    let people = people(&["Alice", "Bob", "Carol"]);
    let (approver, _) = approver(&people, 2);
    let body = common::sign_message("treasury", b"hello").to_json_bytes();
    let answer = |i: usize, v: Verdict| people.keys[i].answer(v, &body, &origin(), RP_ID);

    // Alice twice is one approval.
    let d = approver.tally(
        "op",
        &body,
        &[answer(0, Verdict::Approve), answer(0, Verdict::Approve)],
    );
    assert!(
        d.retry
            && d.reason
                .starts_with("waiting for people: 1 of 2 approvals (approved by Alice)"),
        "{d:?}"
    );
    // Alice and Carol approve.
    let d = approver.tally(
        "op",
        &body,
        &[answer(0, Verdict::Approve), answer(2, Verdict::Approve)],
    );
    assert!(d.is_approval(), "{d:?}");
    // Alice approved, then rejected: she counts as rejecting.
    let d = approver.tally(
        "op",
        &body,
        &[
            answer(0, Verdict::Approve),
            answer(2, Verdict::Approve),
            answer(0, Verdict::Reject),
        ],
    );
    assert!(d.retry && d.reason.contains("rejected by Alice"), "{d:?}");
    // Two rejections: two approvals can no longer come.
    let d = approver.tally(
        "op",
        &body,
        &[answer(1, Verdict::Reject), answer(2, Verdict::Reject)],
    );
    assert_eq!(
        (d.vote, d.retry, d.reason.as_str()),
        (Vote::Reject, false, "rejected by Bob, Carol")
    );
}

#[test]
fn human_settings_are_checked_and_errors_name_the_key() {
    let people = people(&["Alice", "Bob"]);
    let path = people.file.path().to_str().unwrap().to_string();
    let err = |v: ApprovalValues| ApprovalConfig::from_values(&v).unwrap_err();

    let e = err(values(&path, Some("3")));
    assert_eq!(e.key(), "HumanApprovalQuorum");
    assert!(
        e.to_string()
            .contains("3 approvals can never come from the 2 passkeys"),
        "{e}"
    );
    assert_eq!(err(values(&path, Some("0"))).key(), "HumanApprovalQuorum");
    let e = err(values("/nonexistent/passkeys.json", None));
    assert_eq!(e.key(), "HumanApprovalPasskeysFile");
    assert!(
        e.to_string().contains("cannot read /nonexistent/passkeys.json"),
        "{e}"
    );
    assert!(matches!(
        err(ApprovalValues {
            human_approval_origin: None,
            ..values(&path, None)
        }),
        ConfigError::Missing {
            key: "HumanApprovalOrigin",
            mode: "Human"
        }
    ));
    let e = err(ApprovalValues {
        human_approval_origin: Some("http://console.example.com".into()),
        ..values(&path, None)
    });
    assert!(e.to_string().contains("use https://console.example.com"), "{e}");
    let e = err(ApprovalValues {
        human_approval_rp_id: Some("evil.test".into()),
        ..values(&path, None)
    });
    assert_eq!(e.key(), "HumanApprovalRpId");

    // The same passkey twice would count twice.
    let twice = tempfile::NamedTempFile::new().unwrap();
    let mut bob_again = people.passkeys[0].clone();
    bob_again.name = "Bob".into();
    std::fs::write(
        twice.path(),
        passkeys_file(&[people.passkeys[0].clone(), bob_again]),
    )
    .unwrap();
    let e = err(values(twice.path().to_str().unwrap(), None));
    assert!(e.to_string().contains("appears twice"), "{e}");
    // One public key under two credential ids (the signature does not cover the id).
    let mut file: serde_json::Value = serde_json::from_str(&passkeys_file(&people.passkeys)).unwrap();
    let other_id = file["passkeys"][1]["passkey"]["cred"]["cred_id"].clone();
    file["passkeys"][1]["passkey"]["cred"] = file["passkeys"][0]["passkey"]["cred"].clone();
    file["passkeys"][1]["passkey"]["cred"]["cred_id"] = other_id;
    std::fs::write(twice.path(), file.to_string()).unwrap();
    let e = err(values(twice.path().to_str().unwrap(), None));
    assert!(e.to_string().contains("appears twice"), "{e}");

    // localhost over http is what browsers allow; the RP id defaults to the host.
    let ok = ApprovalConfig::from_values(&ApprovalValues {
        human_approval_origin: Some("http://localhost:8080".into()),
        ..values(&path, None)
    })
    .unwrap();
    let vsigner_approval::ModeConfig::Human(HumanConfig { rp_id, quorum, .. }) = ok.mode else {
        panic!()
    };
    assert_eq!((rp_id.as_str(), quorum), ("localhost", 1));

    // Human mode cannot be built without a desk.
    let config = ApprovalConfig::from_values(&values(&path, None)).unwrap();
    let key = DeviceKey::new(common::DEVICE_ID, common::device_signing_key());
    assert_eq!(
        AnyApprover::from_config(&config, key).unwrap_err().key(),
        "ApprovalMode"
    );
}
