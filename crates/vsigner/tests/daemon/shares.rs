//! Attacks on the devices' shares by a hostile coordinator ([`crate::hostile`]), a broker
//! that drops messages ([`crate::hostile_broker`]) and restored storage: each through real
//! `vsigner run` processes, the real coordinator and the embedded broker. After each, every
//! device still holds a share of the vault's key that signs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::attacks::Net;
use crate::harness::*;
use crate::hostile::{each_object, replace_in_strings, HostileCoordinator};
use crate::hostile_broker::HostileBroker;
use crate::{completed, share_files, verify_ed25519};

const FINAL: Duration = Duration::from_secs(120);

/// Share generations of `device`'s key shares of `vault` in a daemon's keystore directory.
fn generations(signer: &Signer, device: &str, vault: &str) -> BTreeSet<u64> {
    share_files(signer, device, vault)
        .iter()
        .filter_map(|f| f.strip_prefix('g')?.strip_suffix(".vsrec")?.parse().ok())
        .collect()
}

/// The vault a keygen created (it must complete) and its public key.
async fn created(net: &Net, keygen: &str) -> (String, String) {
    let op = net.operator.wait_final(keygen, FINAL).await;
    completed(&op);
    let vault = net.operator.client.vault(&op.vault_id).await.unwrap();
    (vault.id, vault.public_key.unwrap())
}

/// Finding 1: a keygen that reuses an existing vault's id, at generation 1, and then the
/// coordinator's word that the vault is at generation 1 with the new key. Before the fix,
/// every device confirmed the new "generation" and destroyed generation 0: the real key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keygen_reusing_a_vault_id_destroys_nothing() {
    let net = Net::start();
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    let s1 = net.signer("s1", &["a"], &hostile.url);
    let s2 = net.signer("s2", &["b"], &hostile.url);
    let ids = net.operator.wait_devices(&["a", "b"]).await;
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let keygen = net
        .operator
        .create_vault("treasury", "ed25519", 2, &[a.clone(), b.clone()])
        .await;
    let (vault, key) = created(&net, &keygen).await;

    // The lie: a vault named "decoy" is shown to the devices as `vault`, at key generation
    // 1; every question about `vault` is asked about the decoy instead.
    let decoy: Arc<Mutex<Option<String>>> = Arc::default();
    let (seen, asked_for) = (decoy.clone(), decoy.clone());
    let real = vault.clone();
    hostile.lie(move |_asked: &Value, answer: &mut Value| {
        let mut found = None;
        each_object(answer, &mut |o| {
            if o.get("name") == Some(&json!("decoy")) {
                found = o.get("id").and_then(Value::as_str).map(str::to_owned);
            }
        });
        if let Some(id) = found {
            *seen.lock().unwrap() = Some(id);
        }
        let Some(id) = seen.lock().unwrap().clone() else {
            return;
        };
        replace_in_strings(answer, &id, &real);
        each_object(answer, &mut |o| {
            if o.get("id") == Some(&json!(real)) && o.contains_key("keyGeneration") {
                o.insert("keyGeneration".into(), json!(1));
            }
        });
    });
    let real = vault.clone();
    hostile.twist(move |asked: &mut Value| {
        if let Some(id) = asked_for.lock().unwrap().clone() {
            replace_in_strings(&mut asked["variables"], &real, &id);
        }
    });
    let attack = net
        .operator
        .create_vault("decoy", "ed25519", 2, &[a.clone(), b.clone()])
        .await;
    let op = net.operator.wait_final(&attack, FINAL).await;
    // Time for the follow-ups that confirmed the "new generation" before the fix.
    tokio::time::sleep(Duration::from_secs(3)).await;
    hostile.honest();

    // Each device keeps generation 0. One refusal rejects a keygen, so the other device may
    // find it decided before it lists it (a race of a few milliseconds under load); at least
    // one device refused it, saying why.
    let mut refused = 0;
    for (signer, device) in [(&s1, &a), (&s2, &b)] {
        assert!(
            generations(signer, device, &vault).contains(&0),
            "device {device} lost generation 0 of vault {vault} (it holds {:?}); the keygen of the decoy ended {}",
            generations(signer, device, &vault),
            op.state
        );
        let log = signer.all_output();
        refused += usize::from(
            log.contains("refuses Keygen") && log.contains("already holds key material of vault"),
        );
    }
    assert!(
        refused >= 1,
        "no device refused the keygen over its vault, saying why:\n{}\n{}",
        s1.all_output(),
        s2.all_output()
    );
    assert_ne!(op.state, "Completed", "the decoy keygen must not complete");
    // Generation 0 still signs, under the vault's key.
    let message = b"still the same key";
    let signed = net
        .operator
        .signed(&vault, json!({"message": hex::encode(message)}))
        .await;
    verify_ed25519(&key, message, &signed);
}

/// What the hostile broker drops during the refreshes: each acknowledgement (round 3) with
/// probability 3/10 and each sub-share (round 2) with 1/20, per recipient, from a seeded
/// generator (splitmix64).
struct Drops {
    state: u64,
    active: bool,
    acks: usize,
    shares: usize,
}

impl Drops {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn decide(&mut self, round: u16) -> bool {
        if !self.active {
            return false;
        }
        let roll = self.next() % 100;
        match round {
            3 if roll < 30 => {
                self.acks += 1;
                true
            }
            2 if roll < 5 => {
                self.shares += 1;
                true
            }
            _ => false,
        }
    }
}

/// Finding 2: refreshes of a 3-of-3 ed25519 vault while the broker drops acknowledgements
/// (and now and then a sub-share) at random, and the coordinator tells every device that
/// every reshare completed, at the newest generation. Before the fix, devices that stored
/// the new generation destroyed the old one on that word while devices that missed a
/// message kept only the old one: no generation was left with three holders. Now a device
/// destroys a generation only on every new holder's signed receipt, so after every run all
/// devices hold one common generation, and the vault signs.
///
/// `VSIGNER_TEST_REFRESHES` (default 50) and `VSIGNER_TEST_SEED` (default 1) choose the
/// number of runs and the drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_with_dropped_messages_end_at_a_common_signable_generation() {
    let runs: usize = std::env::var("VSIGNER_TEST_REFRESHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("VSIGNER_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let net = Net::start();
    let drops = Arc::new(Mutex::new(Drops {
        state: seed,
        active: false,
        acks: 0,
        shares: 0,
    }));
    let decide = drops.clone();
    let broker = HostileBroker::start(
        net.broker_url.trim_start_matches("mqtt://").to_owned(),
        Arc::new(Mutex::new(move |_topic: &str, round: u16| {
            decide.lock().unwrap().decide(round)
        })),
    )
    .await;
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    let signers: Vec<Signer> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, d)| {
            net.signer_with(&format!("s{}", i + 1), &[d], &hostile.url, &broker.url, |cfg| {
                cfg["ProtocolIdleTimeoutSeconds"] = json!(2);
            })
        })
        .collect();
    let ids = net.operator.wait_devices(&["a", "b", "c"]).await;
    let keygen = net.operator.create_vault("refreshed", "ed25519", 3, &ids).await;
    let (vault, key) = created(&net, &keygen).await;

    // The coordinator's lie: every reshare completed, and the vault is at the newest
    // generation any reshare was given, with the key-set hash last submitted.
    let newest: Arc<Mutex<(u64, String)>> = Arc::default();
    let tracked = newest.clone();
    hostile.lie(move |asked: &Value, answer: &mut Value| {
        let query = asked["query"].as_str().unwrap_or_default();
        let mut newest = tracked.lock().unwrap();
        if query.contains("submitReshareResult") {
            if let Some(h) = asked["variables"]["h"].as_str() {
                newest.1 = h.to_owned();
            }
        }
        each_object(answer, &mut |o| {
            let new = o.get("newKeyGeneration").and_then(Value::as_u64).or_else(|| {
                // A coordinator of before newKeyGeneration: the old generation + 1.
                o.get("oldKeyGeneration").and_then(Value::as_u64).map(|g| g + 1)
            });
            if let Some(g) = new {
                newest.0 = newest.0.max(g);
            }
        });
        if let Some(op) = answer["data"]["operation"].as_object_mut() {
            if op.get("kind") == Some(&json!("Reshare")) && op.get("state") == Some(&json!("Failed")) {
                op.insert("state".into(), json!("Completed"));
            }
        }
        if let Some(v) = answer["data"]["vault"].as_object_mut() {
            if newest.0 > 0 {
                v.insert("keyGeneration".into(), json!(newest.0));
                v.insert("keySetHash".into(), json!(newest.1));
            }
        }
    });

    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for run in 0..runs {
        drops.lock().unwrap().active = true;
        let reshare = net.operator.request_reshare(&vault, 3, &ids).await;
        let op = net.operator.wait_final(&reshare, FINAL).await;
        drops.lock().unwrap().active = false;
        *ended.entry(op.state.clone()).or_default() += 1;
        // Time for the follow-ups (commits, or before the fix: destruction on the lie).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let held: Vec<BTreeSet<u64>> = signers
            .iter()
            .zip(&ids)
            .map(|(s, d)| generations(s, d, &vault))
            .collect();
        let common: BTreeSet<u64> = held
            .iter()
            .skip(1)
            .fold(held[0].clone(), |acc, h| acc.intersection(h).copied().collect());
        assert!(
            !common.is_empty(),
            "run {run} (seed {seed}) ended {} and left no generation held by all three devices: {held:?}",
            op.state
        );
        if run % 10 == 9 || run + 1 == runs {
            let message = format!("after refresh {run}");
            let signed = net
                .operator
                .signed(&vault, json!({"message": hex::encode(&message)}))
                .await;
            verify_ed25519(&key, message.as_bytes(), &signed);
        }
    }
    let d = drops.lock().unwrap();
    eprintln!(
        "{runs} refreshes (seed {seed}): {ended:?}; dropped {} acknowledgements and {} sub-shares",
        d.acks, d.shares
    );
    assert!(d.acks > 0, "the broker dropped no acknowledgement");
}

/// A signer daemon configured (and given `primes` prime sets of the test pool, after
/// `skip`) but not started.
fn configured(
    net: &Net,
    name: &str,
    device: &str,
    coordinator_url: &str,
    skip: usize,
    primes: usize,
) -> Signer {
    let s = Signer::configure(
        name,
        net.root.path(),
        &net.org,
        coordinator_url,
        &net.broker_url,
        &net.webhook,
        &[device],
        None,
    );
    if primes > 0 {
        s.import_primes(skip, primes);
    }
    s
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `r` of an ECDSA signature (hex r‖s).
fn r_of(op: &vsigner_signer::coordinator_api::Operation) -> Option<String> {
    op.result.as_ref()?.signature.as_ref().map(|s| s[..64].to_owned())
}

/// Findings 4 and 7. A presignature is used by a signature; then both devices' storage is
/// restored to a copy taken before (a backup, an old object version, a VM snapshot), the
/// daemons restart, and the coordinator hands the same presignature to a signature of
/// another message. Before the fix each device took the presignature out of its restored
/// keystore and signed: the same nonce on two messages, which gives away the key. Now
/// presignatures live in memory only: the devices refuse. Then a refresh onto the same two
/// devices: before the fix it reused their Paillier keys (no prime set taken); now each
/// device takes a prime set for fresh aux-info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_presignature_never_signs_again_and_a_refresh_replaces_the_paillier_keys() {
    let net = Net::start();
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    let mut s1 = configured(&net, "s1", "a", &hostile.url, 0, 2);
    s1.tweak(|cfg| cfg["PresignaturePoolTarget"] = json!(1));
    let mut s2 = configured(&net, "s2", "b", &hostile.url, 2, 2);
    s1.start();
    s2.start();
    let ids = net.operator.wait_devices(&["a", "b"]).await;
    let keygen = net.operator.create_vault("hot", "secp256k1", 2, &ids).await;
    let (vault, key) = created(&net, &keygen).await;

    // A presignature is stocked (device a keeps the pool).
    let start = std::time::Instant::now();
    let presignature = loop {
        let ops = net
            .operator
            .client
            .operations_of(&vault, "Presign")
            .await
            .unwrap();
        if let Some(p) = ops.iter().find(|o| o.state == "Completed") {
            break p.id.clone();
        }
        assert!(start.elapsed() < FINAL, "no presignature was made: {ops:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The backup, taken while the presignature is unused.
    let backups: Vec<std::path::PathBuf> = [&s1, &s2]
        .iter()
        .map(|s| {
            let to = s.dir.join("keystore-backup");
            copy_dir(&s.dir.join("keystore"), &to);
            to
        })
        .collect();
    let first = net
        .operator
        .signed(&vault, json!({"message": hex::encode(b"first message")}))
        .await;
    assert_eq!(
        first.sign.as_ref().and_then(|s| s.presignature_id.as_deref()),
        Some(presignature.as_str()),
        "the first signature uses the stocked presignature"
    );
    crate::verify_secp256k1(&key, &crate::eip191(b"first message"), &first);

    // Storage restored; the daemons restart; the coordinator hands out the used presignature.
    for (s, backup) in [&mut s1, &mut s2].into_iter().zip(&backups) {
        s.proc().kill();
        std::fs::remove_dir_all(s.dir.join("keystore")).unwrap();
        copy_dir(backup, &s.dir.join("keystore"));
        s.start();
    }
    let used = presignature.clone();
    hostile.lie(move |_asked: &Value, answer: &mut Value| {
        each_object(answer, &mut |o| {
            if o.contains_key("presignatureId") && o.contains_key("payloadKind") {
                o.insert("presignatureId".into(), json!(used));
            }
        });
    });
    let second = net
        .operator
        .request_signature(&vault, json!({"message": hex::encode(b"another message")}))
        .await;
    let second = net.operator.wait_final(&second, FINAL).await;
    hostile.honest();
    assert!(
        r_of(&second).is_none() || r_of(&second) != r_of(&first),
        "the same nonce signed two messages: the key is exposed"
    );
    assert_ne!(second.state, "Completed", "a used presignature signed again");
    // Every device that started the run refused the presignature; one may never have
    // run it (the other's refusal failed the operation before it got to it).
    let mut refusals = 0;
    for s in [&s1, &s2] {
        let log = s.all_output();
        let refused = log.contains(&format!("holds no presignature {presignature}"));
        let ran = log
            .lines()
            .any(|l| l.contains("protocol run starting") && l.contains(&second.id));
        assert!(
            refused || !ran,
            "{} ran the signature and did not refuse the used presignature:\n{log}",
            s.name
        );
        refusals += usize::from(refused);
    }
    assert!(refusals >= 1, "no device refused the used presignature");
    // The vault still signs.
    let third = net
        .operator
        .signed(&vault, json!({"message": hex::encode(b"third message")}))
        .await;
    crate::verify_secp256k1(&key, &crate::eip191(b"third message"), &third);

    // A refresh onto the same set and threshold takes a prime set on each device: new
    // Paillier keys.
    let before: Vec<usize> = [&s1, &s2].iter().map(|s| crate::prime_sets(s)).collect();
    assert_eq!(
        before,
        [1, 1],
        "each device has one prime set left after the keygen"
    );
    let refresh = net.operator.request_reshare(&vault, 2, &ids).await;
    let op = net.operator.wait_final(&refresh, FINAL).await;
    completed(&op);
    let after: Vec<usize> = [&s1, &s2].iter().map(|s| crate::prime_sets(s)).collect();
    assert_eq!(
        after,
        [0, 0],
        "a refresh must generate fresh aux-info (new Paillier keys)"
    );
    let fourth = net
        .operator
        .signed(&vault, json!({"message": hex::encode(b"after the refresh")}))
        .await;
    crate::verify_secp256k1(&key, &crate::eip191(b"after the refresh"), &fourth);
}

/// Finding 3: a 2-of-3 reshare to a, b and c is approved, and the coordinator's committee
/// leaves c out. Before the fix a and b ran it as a 2-of-2 among themselves and stored the
/// result. Now the run's new set must be exactly the approved one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshare_that_drops_an_approved_signer_does_not_run() {
    let net = Net::start();
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    let s1 = net.signer("s1", &["a"], &hostile.url);
    let s2 = net.signer("s2", &["b"], &hostile.url);
    let _s3 = net.signer("s3", &["c"], &hostile.url);
    let ids = net.operator.wait_devices(&["a", "b", "c"]).await;
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let keygen = net
        .operator
        .create_vault("dropped", "ed25519", 2, &[a.clone(), b.clone()])
        .await;
    let (vault, _) = created(&net, &keygen).await;
    let left_out = c.clone();
    hostile.lie(move |_asked: &Value, answer: &mut Value| {
        each_object(answer, &mut |o| {
            if let Some(Value::Array(members)) = o.get_mut("committee") {
                members.retain(|m| m["deviceId"] != json!(left_out));
            }
        });
    });
    let reshare = net
        .operator
        .request_reshare(&vault, 2, &[a.clone(), b.clone(), c])
        .await;
    let op = net.operator.wait_final(&reshare, FINAL).await;
    hostile.honest();
    assert_ne!(op.state, "Completed");
    let mut refused = 0;
    for (s, d) in [(&s1, &a), (&s2, &b)] {
        assert_eq!(
            generations(s, d, &vault),
            BTreeSet::from([0]),
            "device {d} stored a share of a reshare that left out an approved signer"
        );
        // Each device refused the run itself, or found it already failed by the other's
        // refusal when it asked to start.
        let log = s.all_output();
        let this_refused = log.contains("is not the approved one");
        refused += usize::from(this_refused);
        assert!(
            this_refused || log.contains(&format!("operation {reshare} is Failed")),
            "{}:\n{log}",
            s.name
        );
    }
    assert!(refused >= 1, "no device refused the reshare itself");
    net.operator
        .signed(&vault, json!({"message": hex::encode(b"unchanged")}))
        .await;
}

/// Finding 8: after a signature completes and the daemons restart, the coordinator lists
/// the same operation as Ready again (and pretends `startOperation` succeeds). Before the fix
/// each device asked its approver again, which approved the same payload again, and signed
/// a second time. Now a device runs an operation once, across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_listed_again_is_not_signed_twice() {
    let net = Net::start();
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    let mut s1 = net.signer("s1", &["a"], &hostile.url);
    let mut s2 = net.signer("s2", &["b"], &hostile.url);
    // The coordinator keeps a copy of every operation it lists; once `replay` is set, it
    // lists that one again as Ready, lets `startOperation` on it "succeed", and counts the
    // signatures submitted for it.
    #[derive(Default)]
    struct Replay {
        seen: BTreeMap<String, Value>,
        replay: Option<String>,
        submitted_again: usize,
    }
    let replay: Arc<Mutex<Replay>> = Arc::default();
    let state = replay.clone();
    hostile.lie(move |asked: &Value, answer: &mut Value| {
        let query = asked["query"].as_str().unwrap_or_default();
        let mut state = state.lock().unwrap();
        // Ready operations as the devices read them: listed, answering the deciding vote, or
        // answering a device's wait for the quorum.
        let listed = answer["data"]["operationsReady"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (voted, waited) = (
            answer["data"]["vote"].clone(),
            answer["data"]["waitForOperation"].clone(),
        );
        for op in listed.iter().chain([&voted, &waited]) {
            if let (Some(id), Some("Ready" | "InProgress")) = (op["id"].as_str(), op["state"].as_str()) {
                state.seen.insert(id.to_owned(), op.clone());
            }
        }
        let Some(id) = state.replay.clone() else { return };
        let mut again = state.seen.get(&id).cloned().unwrap_or(Value::Null);
        again["state"] = json!("Ready");
        again["submittedDeviceIds"] = json!([]);
        let about_it = asked["variables"]["o"] == json!(id);
        if query.contains("operationsReady") {
            if let Some(list) = answer["data"]["operationsReady"].as_array_mut() {
                list.push(again);
            }
        } else if query.contains("startOperation") && about_it {
            again["state"] = json!("InProgress");
            *answer = json!({"data": {"startOperation": again}});
        } else if query.contains("submitSignature") && about_it {
            state.submitted_again += 1;
        }
    });
    let ids = net.operator.wait_devices(&["a", "b"]).await;
    let keygen = net.operator.create_vault("once", "ed25519", 2, &ids).await;
    let (vault, _) = created(&net, &keygen).await;
    let signed = net
        .operator
        .signed(&vault, json!({"message": hex::encode(b"pay once")}))
        .await;
    assert!(replay.lock().unwrap().seen.contains_key(&signed.id));
    // The daemons restart (what a process remembers is gone), then the operation is listed
    // again.
    for s in [&mut s1, &mut s2] {
        s.proc().kill();
        s.start();
    }
    replay.lock().unwrap().replay = Some(signed.id.clone());
    tokio::time::sleep(Duration::from_secs(8)).await;
    hostile.honest();
    assert_eq!(
        replay.lock().unwrap().submitted_again,
        0,
        "a device signed the same operation a second time"
    );
    for s in [&s1, &s2] {
        let log = s.all_output();
        assert!(log.contains("already ran the operation"), "{}:\n{log}", s.name);
    }
}

/// `startOperation` is a record, not a gate: the device writes its run mark, runs and
/// submits without waiting for the coordinator's answer, and reports the start only of a
/// run that lasts (a fast one reports its result only). A coordinator that never takes a
/// start (every answer an error) does not hold the signature back, and each device still
/// runs it once. Before, the run waited for the start and was asked again at each listing,
/// so this signature never completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_the_coordinator_never_takes_does_not_hold_the_run_back() {
    let net = Net::start();
    let hostile = HostileCoordinator::start(&net.coordinator_url).await;
    // Device b hears of the signature late: its own proxy shows it no Ready operation until
    // two seconds after it first could, so that a's run waits that long for b's first
    // message, and lasts long enough to report its start.
    let late = HostileCoordinator::start(&net.coordinator_url).await;
    let s1 = net.signer("s1", &["a"], &hostile.url);
    let s2 = net.signer("s2", &["b"], &late.url);
    let ids = net.operator.wait_devices(&["a", "b"]).await;
    let keygen = net.operator.create_vault("unstarted", "ed25519", 2, &ids).await;
    let (vault, key) = created(&net, &keygen).await;
    let first_ready: Arc<Mutex<BTreeMap<String, std::time::Instant>>> = Arc::default();
    late.lie(move |_asked: &Value, answer: &mut Value| {
        let mut first_ready = first_ready.lock().unwrap();
        let mut hidden = |op: &serde_json::Map<String, Value>| {
            let ready = matches!(
                op.get("state").and_then(Value::as_str),
                Some("Ready" | "InProgress")
            );
            match op.get("id").and_then(Value::as_str) {
                Some(id) if ready => {
                    let since = *first_ready
                        .entry(id.to_owned())
                        .or_insert_with(std::time::Instant::now);
                    since.elapsed() < Duration::from_secs(2)
                }
                _ => false,
            }
        };
        if let Some(listed) = answer["data"]["operationsReady"].as_array_mut() {
            listed.retain(|op| !op.as_object().is_some_and(&mut hidden));
        }
        each_object(answer, &mut |op| {
            if hidden(op) {
                op.insert("state".to_owned(), json!("AwaitingApproval"));
            }
        });
    });
    let starts: Arc<Mutex<usize>> = Arc::default();
    let counted = starts.clone();
    hostile.lie(move |asked: &Value, answer: &mut Value| {
        if asked["query"]
            .as_str()
            .is_some_and(|q| q.contains("startOperation"))
        {
            *counted.lock().unwrap() += 1;
            *answer =
                json!({"data": null, "errors": [{"message": "busy", "extensions": {"code": "INTERNAL"}}]});
        }
    });
    let op = net
        .operator
        .signed(&vault, json!({"message": hex::encode(b"never started")}))
        .await;
    hostile.honest();
    late.honest();
    verify_ed25519(&key, b"never started", &op);
    assert!(
        *starts.lock().unwrap() >= 1,
        "device a's run did not report its start"
    );
    let logs: Vec<String> = [&s1, &s2].iter().map(|s| s.all_output()).collect();
    assert!(
        logs[0].contains("startOperation not taken"),
        "device a did not see the refused start:\n{}",
        logs.join("\n")
    );
    for log in &logs {
        assert!(!log.contains("already ran"), "{log}");
        let runs = log
            .lines()
            .filter(|l| l.contains("protocol run starting") && l.contains(&op.id))
            .count();
        assert_eq!(runs, 1, "each device runs the signature once:\n{log}");
    }
}

/// Lifts `chattr +i` from a directory when dropped, so that the test's directory can go.
struct Immutable(std::path::PathBuf);

impl Immutable {
    /// Makes `dir` immutable (not even root creates a file in it); `None` where the file
    /// system or the sandbox does not allow it.
    fn make(dir: &std::path::Path) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(dir.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A device whose run mark cannot be written sends no signature share. FROST signing sends
/// its nonce commitments while the mark is written and holds its share back until the mark
/// is durable (`RunMark`): here device a's mark folder is made immutable after a first
/// signature created it, so a's second mark fails. The signature must fail with that reason
/// and no result: b cannot sign without a's share. A share sent before the mark (the gate
/// left open) lets b aggregate a signature, and the operation completes: this test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_cannot_mark_its_run_sends_no_signature_share() {
    let net = Net::start();
    let s1 = net.signer("s1", &["a"], &net.coordinator_url);
    let _s2 = net.signer("s2", &["b"], &net.coordinator_url);
    let ids = net.operator.wait_devices(&["a", "b"]).await;
    let keygen = net.operator.create_vault("unmarked", "ed25519", 2, &ids).await;
    let (vault, key) = created(&net, &keygen).await;
    let first = net
        .operator
        .signed(&vault, json!({"message": hex::encode(b"marked")}))
        .await;
    verify_ed25519(&key, b"marked", &first);
    let marks = s1
        .dir
        .join("keystore/devices")
        .join(&ids[0])
        .join("operation-run");
    assert!(marks.is_dir(), "no run marks at {}", marks.display());
    let Some(_immutable) = Immutable::make(&marks) else {
        // Root on ext4 (the CI machines) can; a container without CAP_LINUX_IMMUTABLE or an
        // overlay file system cannot, and must say so rather than pass untested.
        assert!(
            std::env::var_os("VSIGNER_TEST_NO_CHATTR").is_some(),
            "`chattr +i {}` failed: this test needs it (root, ext4); set VSIGNER_TEST_NO_CHATTR=1 to skip it",
            marks.display()
        );
        eprintln!("skipped (VSIGNER_TEST_NO_CHATTR): `chattr +i` is not available here");
        return;
    };
    let id = net
        .operator
        .request_signature(&vault, json!({"message": hex::encode(b"unmarked")}))
        .await;
    let op = net.operator.wait_final(&id, FINAL).await;
    assert_eq!(op.state, "Failed", "signed without a's run mark: {:?}", op.result);
    assert!(op.result.is_none(), "{:?}", op.result);
    let failure = op.failure.expect("a failure");
    assert!(
        failure.reason.contains("as run"),
        "the failure names the mark: {failure:?}"
    );
    assert!(
        failure.culprit_device_ids.is_empty(),
        "a local storage fault blames no peer: {failure:?}"
    );
    let log = s1.all_output();
    assert!(
        log.contains(&format!("cannot mark operation {id} as run")),
        "a says why it did not sign:\n{log}"
    );
}

/// Finding 5: a signer whose keystore holds prime sets from the committed public pool (as
/// the README walkthrough imports them) refuses to start, naming the setting, unless
/// `AllowPublicTestPrimes = true`. Before the fix it started and used them.
#[test]
fn a_signer_with_the_public_test_primes_refuses_to_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "Port": 0, "PrometheusPort": 0, "OrgId": "org", "AuthClientId": "id",
        "AuthClientSecret": "the-client-secret-value", "APIBaseURL": "http://127.0.0.1:1",
        "MQTTEndpoint": "mqtt://127.0.0.1:1", "ApprovalMode": "AlwaysApprove",
        "KeystoreSealing": "passphrase", "KeystorePassphrase": PASSPHRASE,
        "SignerAPIToken": API_TOKEN, "PrimePoolTarget": 0,
        "STORAGE_BUCKET_URL": dir.path().join("ks").to_str().unwrap(),
    });
    let path = dir.path().join("signer.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let pool = repo_root().join("test-data/primes/public-test-pool.json");
    let out = std::process::Command::new(bin())
        .args(["primes", "import", "--config"])
        .arg(&path)
        .arg("--from")
        .arg(&pool)
        .args(["--count", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut run = Proc::spawn(
        "signer",
        std::process::Command::new(bin())
            .args(["run", "--config"])
            .arg(&path),
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "vsigner run did not refuse the public test primes at start:\n{}",
            run.output.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    let output = run.output.text();
    assert!(!status.success());
    assert!(
        output.contains("AllowPublicTestPrimes") && output.contains("public test primes"),
        "the error must name the setting: {output}"
    );
    assert!(!output.contains("the-client-secret-value") && !output.contains(PASSPHRASE));
}
