//! Weighted devices through the real daemons: devices a, b, c weighted 2, 1, 1 (four
//! shares), threshold 3. Device a runs two parties of every protocol. A secp256k1 vault
//! (keygen with four parties' aux-info, a signature by {a, b} from a presignature, a full
//! signature by {a, c}) and an ed25519 vault (keygen, a signature by {a, b}); then a reshare
//! of both that moves the weight to b (a 1, b 2, c 1) and a signature by {b, c} with the
//! same keys. Every signature is verified here with `k256` and `ed25519-dalek`. Device a's
//! disaster-recovery file holds its two shares: with b's it rebuilds the key.

use serde_json::json;

use super::harness::*;
use super::{completed, eip191, prime_sets, verify_ed25519, verify_secp256k1, KEYGEN};

/// The committee's parties as (device, share index).
fn parties(op: &vsigner_signer::coordinator_api::Operation) -> Vec<(String, Option<u16>)> {
    op.committee
        .iter()
        .map(|m| (m.device_id.clone(), m.old_index.or(m.index)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_weight_two_signs_with_two_shares_and_a_reshare_moves_the_weight() {
    let root = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    let webhook = start_webhook();
    // One prime set per ECDSA party: a runs 2 then 1, b 1 then 2, c 1 and 1.
    let primes = [(0, 3), (3, 3), (6, 2)];
    let mut signers = Signer::one_device_each(
        root.path(),
        &org,
        &coordinator_url,
        &broker_url,
        &webhook,
        &["a", "b", "c"],
        &primes,
    );
    // Device a, first of the vault, keeps one presignature ready: by a and b, whose
    // weights add up to the threshold.
    signers[0].tweak(|cfg| cfg["PresignaturePoolTarget"] = json!(1));
    // Disaster-recovery files: a's holds its two shares.
    let dr_key = vsigner_recovery::DrPrivateKey::generate();
    let dr_private = root.path().join("dr.key");
    std::fs::write(&dr_private, dr_key.to_pem().unwrap().as_bytes()).unwrap();
    let dr_public = dr_key.public_key().to_pem().unwrap();
    for s in &mut signers {
        let dir = s.dir.join("dr");
        s.tweak(|cfg| {
            cfg["DisasterRecoveryPublicKey"] = json!(dr_public);
            cfg["DisasterRecoveryDir"] = json!(dir.to_str().unwrap());
        });
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let abc = operator.wait_devices(&["a", "b", "c"]).await;
    let weighted = |w: [u32; 3]| -> Vec<(String, u32)> { abc.iter().cloned().zip(w).collect() };

    let secp = operator
        .create_weighted_vault("weighted", "secp256k1", 3, &weighted([2, 1, 1]))
        .await;
    let ed = operator
        .create_weighted_vault("weighted-ed", "ed25519", 3, &weighted([2, 1, 1]))
        .await;
    let secp_op = operator.wait_final(&secp, KEYGEN).await;
    completed(&secp_op);
    assert_eq!(
        parties(&secp_op),
        vec![
            (abc[0].clone(), Some(0)),
            (abc[0].clone(), Some(1)),
            (abc[1].clone(), Some(2)),
            (abc[2].clone(), Some(3)),
        ],
        "a keygen has a party per share"
    );
    let ed_op = operator.wait_final(&ed, KEYGEN).await;
    completed(&ed_op);
    let (secp_vault, ed_vault) = (secp_op.vault_id.clone(), ed_op.vault_id.clone());
    let secp_key = secp_op.result.as_ref().unwrap().public_key.clone().unwrap();
    let ed_key = ed_op.result.as_ref().unwrap().public_key.clone().unwrap();
    assert_eq!(
        prime_sets(&signers[0]),
        1,
        "a used a prime set for each of its two parties"
    );
    // a's file and b's rebuild the key (3 shares); a's alone holds 2 of the 3 needed.
    let dr_file = |k: usize| {
        signers[k]
            .dir
            .join("dr")
            .join(&abc[k])
            .join(format!("{ed_vault}.eddsa.ed25519.dr"))
    };
    let start = std::time::Instant::now();
    while !(dr_file(0).exists() && dr_file(1).exists()) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no .dr files"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let recover = |files: &[std::path::PathBuf]| {
        std::process::Command::new(bin())
            .args(["recover", "--json", "--private-key"])
            .arg(&dr_private)
            .args(["--expect-public-key", &ed_key])
            .args(files)
            .output()
            .unwrap()
    };
    let out = recover(&[dr_file(0), dr_file(1)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["threshold"].as_u64(), doc["sharesUsed"].as_u64()),
        (Some(3), Some(3)),
        "{doc}"
    );
    let out = recover(&[dr_file(0)]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 shares of the 3 needed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With c stopped, a and b are the committee: a's two shares and b's one.
    operator.wait_presignature(&secp_vault, KEYGEN).await;
    signers[2].proc().kill();
    let message = b"weighted: a and b";
    let op = operator
        .signed(&secp_vault, json!({"message": hex::encode(message)}))
        .await;
    assert!(
        op.sign.as_ref().unwrap().presignature_id.is_some(),
        "the signature used the presignature of a's two parties and b's"
    );
    assert_eq!(
        parties(&op),
        vec![
            (abc[0].clone(), Some(0)),
            (abc[0].clone(), Some(1)),
            (abc[1].clone(), Some(2))
        ]
    );
    verify_secp256k1(&secp_key, &eip191(message), &op);
    let op = operator
        .signed(&ed_vault, json!({"message": hex::encode(message)}))
        .await;
    verify_ed25519(&ed_key, message, &op);
    signers[2].start();

    // With b stopped, a and c: the full protocol, a again with two parties.
    signers[1].proc().kill();
    let digest = [0x42u8; 32];
    let op = operator
        .signed(&secp_vault, json!({"digest": hex::encode(digest)}))
        .await;
    assert_eq!(op.committee.len(), 3);
    assert!(op.sign.as_ref().unwrap().presignature_id.is_none());
    verify_secp256k1(&secp_key, &digest, &op);
    signers[1].start();

    // The weight moves to b: a 1, b 2, c 1, same keys, new shares.
    let secp_reshare = operator
        .request_weighted_reshare(&secp_vault, 3, &weighted([1, 2, 1]))
        .await;
    let ed_reshare = operator
        .request_weighted_reshare(&ed_vault, 3, &weighted([1, 2, 1]))
        .await;
    completed(&operator.wait_final(&secp_reshare, KEYGEN).await);
    completed(&operator.wait_final(&ed_reshare, KEYGEN).await);
    for s in &signers {
        assert_eq!(
            prime_sets(s),
            0,
            "{}: the reshare took new aux-info per party",
            s.name
        );
    }

    // With a stopped, b (two shares now) and c sign with the same keys.
    signers[0].proc().kill();
    let message = b"weighted: b and c after the reshare";
    let op = operator
        .signed(&ed_vault, json!({"message": hex::encode(message)}))
        .await;
    assert_eq!(
        parties(&op),
        vec![
            (abc[1].clone(), Some(1)),
            (abc[1].clone(), Some(2)),
            (abc[2].clone(), Some(3))
        ]
    );
    verify_ed25519(&ed_key, message, &op);
    let op = operator
        .signed(&secp_vault, json!({"digest": hex::encode(digest)}))
        .await;
    verify_secp256k1(&secp_key, &digest, &op);
}
