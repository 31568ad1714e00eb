//! A write killed at each of its steps leaves the old value or the new one, never neither
//! and never a corrupted record: a child process aborts right after each step of a local
//! write, then the keystore is reopened and checked.
//!
//! The child is this test binary itself, started again to run only [`crash_child`] with
//! the write to make in environment variables (a second binary in the crate would be one
//! more target for `cargo run` to choose from).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use vsigner_keystore::backend::{crash_after, WriteStep};
use vsigner_keystore::sealing::Argon2Params;
use vsigner_keystore::{Keystore, Passphrase, RecordId};

/// Set in the child's environment: `DIR KIND STEP VALUE`, separated by newlines.
const CHILD_ENV: &str = "VSIGNER_KEYSTORE_CRASH_CHILD";

fn pass() -> Passphrase {
    pass_of("crash")
}

fn pass_of(passphrase: &str) -> Passphrase {
    Passphrase::with_params(
        passphrase,
        Argon2Params {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        },
    )
}

/// Runs the write described by [`CHILD_ENV`] and aborts after its chosen step; does nothing
/// when the variable is not set (an ordinary test run).
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [dir, kind, step, value] = spec.split('\n').collect::<Vec<_>>()[..] else {
        panic!("{CHILD_ENV} must hold DIR, KIND, STEP and VALUE");
    };
    let step = match step {
        "1" => WriteStep::TempWritten,
        "2" => WriteStep::TempSynced,
        "3" => WriteStep::Published,
        "4" => WriteStep::DirSynced,
        other => panic!("unknown step {other}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut ks = Keystore::open(dir, &pass()).await.unwrap();
        crash_after(step);
        match kind {
            "rekey" => ks.rekey(&pass_of(value)).await.unwrap(),
            "share" => ks
                .put(&RecordId::key_share("dev", "v", 1).unwrap(), value.as_bytes())
                .await
                .unwrap(),
            "confirm" => {
                ks.confirm_generation("dev", "v", value.parse().unwrap(), &|_: &[u8]| Some(Vec::new()))
                    .await
                    .unwrap();
            }
            other => panic!("unknown kind {other}"),
        }
    });
    panic!("the write finished without crashing");
}

/// Makes one write in a child process that aborts right after `step`.
fn crash(dir: &std::path::Path, kind: &str, step: u8, value: &str) {
    let spec = format!("{}\n{kind}\n{step}\n{value}", dir.to_str().unwrap());
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "the child must die at step {step}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // An abort, not a failed assertion on the way to the step.
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(6),
            "step {step}: the child must abort (SIGABRT), not fail: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
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
            ks.confirm_generation("dev", "v", 1, &|_: &[u8]| Some(Vec::new()))
                .await
                .unwrap();
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

#[tokio::test]
async fn a_rekey_leaves_the_old_sealing_or_the_new_after_a_crash_at_any_step() {
    for step in 1..=4u8 {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().to_str().unwrap();
        Keystore::open(url, &pass())
            .await
            .unwrap()
            .put(&RecordId::key_share("dev", "v", 1).unwrap(), b"the share")
            .await
            .unwrap();
        crash(dir.path(), "rekey", step, "the new passphrase");
        let old = Keystore::open_existing(url, &pass()).await;
        let new = Keystore::open_existing(url, &pass_of("the new passphrase")).await;
        // Exactly one sealing opens it: the old until the new header is published.
        let ks = match step {
            1 | 2 => {
                assert!(
                    new.is_err(),
                    "step {step}: the new sealing before it is published"
                );
                old.unwrap()
            }
            _ => {
                assert!(
                    old.is_err(),
                    "step {step}: the old sealing after the new is published"
                );
                new.unwrap()
            }
        };
        let share = ks
            .get(&RecordId::key_share("dev", "v", 1).unwrap())
            .await
            .unwrap();
        assert_eq!(share.unwrap().as_slice(), b"the share", "step {step}");
    }
}
