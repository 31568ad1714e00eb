//! A write killed at each of its steps leaves the old value or the new one, never neither
//! and never a corrupted record: a child process aborts right after each step of a local
//! write (`vsigner-keystore-crash-helper`), then the keystore is reopened and checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use vsigner_keystore::sealing::Argon2Params;
use vsigner_keystore::{Keystore, Passphrase, RecordId};

const HELPER: &str = env!("CARGO_BIN_EXE_vsigner-keystore-crash-helper");

fn pass() -> Passphrase {
    Passphrase::with_params(
        "crash",
        Argon2Params {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        },
    )
}

fn crash(dir: &std::path::Path, kind: &str, step: u8, value: &str) {
    let status = Command::new(HELPER)
        .args([dir.to_str().unwrap(), "crash", kind, &step.to_string(), value])
        .status()
        .unwrap();
    assert!(!status.success(), "the helper must die at step {step}");
}

#[tokio::test]
async fn new_record_is_absent_or_complete_after_a_crash_at_any_step() {
    for step in 1..=4u8 {
        let dir = tempfile::tempdir().unwrap();
        Keystore::open(dir.path().to_str().unwrap(), &pass())
            .await
            .unwrap();
        crash(dir.path(), "share", step, "the new share");
        let ks = Keystore::open_existing(dir.path().to_str().unwrap(), &pass())
            .await
            .unwrap();
        let got = ks
            .get(&RecordId::key_share("dev", "v", 1).unwrap())
            .await
            .unwrap();
        match step {
            1 | 2 => assert!(got.is_none(), "step {step}: not yet published"),
            _ => assert_eq!(got.unwrap().as_slice(), b"the new share", "step {step}"),
        }
        // The interrupted write is reported and can be cleaned; the record survives.
        let left = ks.leftovers().await.unwrap();
        assert_eq!(left.interrupted_writes.len(), 1, "step {step}: {left:?}");
        ks.clean_leftovers().await.unwrap();
        assert!(ks.leftovers().await.unwrap().interrupted_writes.is_empty());
    }
}

#[tokio::test]
async fn replaced_record_is_old_or_new_after_a_crash_at_any_step() {
    for step in 1..=4u8 {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().to_str().unwrap();
        {
            let ks = Keystore::open(url, &pass()).await.unwrap();
            ks.put(&RecordId::key_share("dev", "v", 1).unwrap(), b"g1")
                .await
                .unwrap();
            ks.put(&RecordId::key_share("dev", "v", 2).unwrap(), b"g2")
                .await
                .unwrap();
            ks.confirm_generation("dev", "v", 1).await.unwrap();
        }
        crash(dir.path(), "confirm", step, "2");
        let ks = Keystore::open_existing(url, &pass()).await.unwrap();
        let confirmed = ks.confirmed_generation("dev", "v").await.unwrap();
        match step {
            1 | 2 => assert_eq!(confirmed, Some(1), "step {step}: old value"),
            _ => assert_eq!(confirmed, Some(2), "step {step}: new value"),
        }
        // Both generations are still there: the deletion of g1 never ran.
        assert_eq!(ks.share_generations("dev", "v").await.unwrap(), vec![1, 2]);
        let left = ks.leftovers().await.unwrap();
        if confirmed == Some(2) {
            assert_eq!(
                left.superseded_shares,
                vec![RecordId::key_share("dev", "v", 1).unwrap()]
            );
        }
    }
}
