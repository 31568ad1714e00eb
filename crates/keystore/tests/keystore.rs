//! The keystore against a local directory and `memory://`: every record kind, wrong keys,
//! tampering, swapping, take-once, generations and leftovers, providers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use vsigner_keystore::sealing::Argon2Params;
use vsigner_keystore::store::inspect;
use vsigner_keystore::{KeyFile, Keystore, KeystoreError, Passphrase, RecordId, RecordKind, SgxSealing};

const LIGHT: Argon2Params = Argon2Params {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

fn pass(p: &str) -> Passphrase {
    Passphrase::with_params(p, LIGHT)
}

fn test_data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

/// Real key material of every kind, as the daemon would store it.
fn samples() -> Vec<(RecordId, Vec<u8>)> {
    use vsigner_tss::ecdsa::{AuxInfo, Secp256k1};
    let aux = std::fs::read(test_data().join("aux-info/n3/party-0.vsgn")).unwrap();
    let aux_info = AuxInfo::from_bytes(&aux).unwrap();
    let pool: vsigner_tss::primes::PrimePoolFile = serde_json::from_str(
        &std::fs::read_to_string(test_data().join("primes/public-test-pool.json")).unwrap(),
    )
    .unwrap();
    let prime_set = pool.into_sets().unwrap().remove(0).to_bytes().unwrap().to_vec();
    // The known share whose secret `no_secret_in_logs` looks for.
    let share = std::fs::read(test_data().join("key-shares/secp256k1-2of3/party-0.vsgn")).unwrap();
    vsigner_tss::ecdsa::CoreShare::<Secp256k1>::from_bytes(&share).unwrap();
    vec![
        (
            RecordId::identity("dev-1").unwrap(),
            b"identity secrets (ed25519 + x25519 keys)".to_vec(),
        ),
        (RecordId::key_share("dev-1", "vault-1", 1).unwrap(), share),
        (
            RecordId::aux_info("dev-1", "set-3").unwrap(),
            aux_info.to_bytes().unwrap().to_vec(),
        ),
        (RecordId::prime_set("dev-1", "ps-1").unwrap(), prime_set),
        (
            RecordId::presignature("dev-1", "vault-1", "pre-1").unwrap(),
            b"presignature bytes".to_vec(),
        ),
    ]
}

async fn round_trip(url: &str) {
    let ks = Keystore::open(url, &pass("correct horse")).await.unwrap();
    let samples = samples();
    for (id, bytes) in &samples {
        ks.put(id, bytes).await.unwrap();
    }
    let ks = Keystore::open_existing(url, &pass("correct horse"))
        .await
        .unwrap();
    for (id, bytes) in &samples {
        assert_eq!(
            ks.get(id).await.unwrap().unwrap().as_slice(),
            bytes.as_slice(),
            "{id}"
        );
    }
    let listed = ks.list().await.unwrap();
    assert_eq!(listed.len(), samples.len());
    // Records are written once.
    let err = ks.put(&samples[1].0, b"other").await.unwrap_err();
    assert!(matches!(err, KeystoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        ks.get(&samples[1].0).await.unwrap().unwrap().as_slice(),
        samples[1].1.as_slice()
    );
}

#[tokio::test]
async fn every_record_kind_round_trips_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(dir.path().to_str().unwrap()).await;
    let (provider, records) = inspect(dir.path().to_str().unwrap()).await.unwrap();
    assert_eq!(provider, "passphrase");
    let kinds: Vec<RecordKind> = records.iter().map(|r| r.id.kind()).collect();
    for k in [
        RecordKind::DeviceIdentity,
        RecordKind::KeyShare,
        RecordKind::AuxInfo,
        RecordKind::PrimeSet,
        RecordKind::Presignature,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn every_record_kind_round_trips_in_memory() {
    // Each memory:// URL opens a fresh store, so the whole round trip uses one keystore.
    let ks = Keystore::open("memory://", &pass("p")).await.unwrap();
    for (id, bytes) in samples() {
        ks.put(&id, &bytes).await.unwrap();
        assert_eq!(ks.get(&id).await.unwrap().unwrap().as_slice(), bytes.as_slice());
    }
}

#[tokio::test]
async fn wrong_passphrase_is_refused_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let ks = Keystore::open(url, &pass("right")).await.unwrap();
    let id = RecordId::key_share("dev", "v", 1).unwrap();
    ks.put(&id, b"share").await.unwrap();
    let header = std::fs::read(dir.path().join("keystore.json")).unwrap();
    let record = std::fs::read(dir.path().join(id.path())).unwrap();

    for attempt in [
        Keystore::open(url, &pass("wrong")).await,
        Keystore::open_existing(url, &pass("wrong")).await,
    ] {
        let err = attempt.unwrap_err();
        assert!(matches!(err, KeystoreError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        assert!(!err.to_string().contains("right") && !err.to_string().contains("wrong\""));
    }
    assert_eq!(std::fs::read(dir.path().join("keystore.json")).unwrap(), header);
    assert_eq!(std::fs::read(dir.path().join(id.path())).unwrap(), record);
    // A different provider is refused with a clear message.
    let key = dir.path().join("key");
    let err = Keystore::open(url, &KeyFile::create(&key).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("sealed by the passphrase provider"),
        "{err}"
    );
}

#[tokio::test]
async fn default_argon2_parameters_are_stored_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    Keystore::open(url, &Passphrase::new("pw")).await.unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("keystore.json")).unwrap()).unwrap();
    assert_eq!(header["provider_params"]["m_cost"], 65536);
    assert!(
        !header.to_string().contains("pw\""),
        "the passphrase is not stored"
    );
    // Opening with other default parameters still uses the stored ones.
    Keystore::open_existing(url, &pass("pw")).await.unwrap();
}

#[tokio::test]
async fn every_single_byte_flip_and_truncation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
        .await
        .unwrap();
    let (id, bytes) = samples().remove(1); // a real key share
    ks.put(&id, &bytes).await.unwrap();
    let file = dir.path().join(id.path());
    let stored = std::fs::read(&file).unwrap();
    for k in 0..stored.len() {
        let mut flipped = stored.clone();
        flipped[k] ^= 0x01;
        std::fs::write(&file, &flipped).unwrap();
        let err = ks.get(&id).await.unwrap_err();
        assert!(matches!(err, KeystoreError::Tampered { .. }), "byte {k}: {err}");
    }
    for len in [0, 1, 10, 29, 30, stored.len() / 2, stored.len() - 1] {
        std::fs::write(&file, &stored[..len]).unwrap();
        assert!(
            matches!(ks.get(&id).await.unwrap_err(), KeystoreError::Tampered { .. }),
            "truncated to {len}"
        );
    }
    std::fs::write(&file, &stored).unwrap();
    assert_eq!(ks.get(&id).await.unwrap().unwrap().as_slice(), bytes.as_slice());
}

#[tokio::test]
async fn records_swapped_or_renamed_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
        .await
        .unwrap();
    let a = RecordId::key_share("dev-a", "v", 1).unwrap();
    let b = RecordId::key_share("dev-b", "v", 1).unwrap();
    let a2 = RecordId::key_share("dev-a", "v", 2).unwrap();
    ks.put(&a, b"share of a").await.unwrap();
    ks.put(&b, b"share of b").await.unwrap();
    let (fa, fb) = (dir.path().join(a.path()), dir.path().join(b.path()));
    let (ba, bb) = (std::fs::read(&fa).unwrap(), std::fs::read(&fb).unwrap());
    std::fs::write(&fa, &bb).unwrap();
    std::fs::write(&fb, &ba).unwrap();
    for id in [&a, &b] {
        assert!(matches!(
            ks.get(id).await.unwrap_err(),
            KeystoreError::Tampered { .. }
        ));
    }
    // Moved to another generation's name.
    std::fs::create_dir_all(dir.path().join(a2.path()).parent().unwrap()).unwrap();
    std::fs::write(dir.path().join(a2.path()), &ba).unwrap();
    assert!(matches!(
        ks.get(&a2).await.unwrap_err(),
        KeystoreError::Tampered { .. }
    ));
}

#[tokio::test]
async fn a_presignature_is_taken_only_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let id = RecordId::presignature("dev", "v", "p1").unwrap();
    {
        let ks = Keystore::open(url, &pass("p")).await.unwrap();
        ks.put(&id, b"presig").await.unwrap();
        assert_eq!(ks.take(&id).await.unwrap().unwrap().as_slice(), b"presig");
        assert!(ks.take(&id).await.unwrap().is_none());
    }
    let ks = Keystore::open_existing(url, &pass("p")).await.unwrap();
    assert!(
        ks.take(&id).await.unwrap().is_none(),
        "a taken presignature is gone after a restart"
    );
    assert!(!dir.path().join(id.path()).exists());
    // Shares are never "taken".
    let share = RecordId::key_share("dev", "v", 1).unwrap();
    assert!(matches!(
        ks.take(&share).await.unwrap_err(),
        KeystoreError::Lifecycle(_)
    ));
}

#[tokio::test]
async fn share_generations_are_deleted_only_after_a_successor_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
        .await
        .unwrap();
    let g = |n| RecordId::key_share("dev", "vault", n).unwrap();
    ks.put(&g(1), b"gen 1").await.unwrap();
    ks.confirm_generation("dev", "vault", 1, &first_byte)
        .await
        .unwrap();
    ks.put(&g(2), b"gen 2").await.unwrap(); // a reshare's output, not confirmed yet
    assert!(matches!(
        ks.delete(&g(1)).await.unwrap_err(),
        KeystoreError::Lifecycle(_)
    ));
    assert!(matches!(
        ks.delete(&g(2)).await.unwrap_err(),
        KeystoreError::Lifecycle(_)
    ));
    let left = ks.leftovers().await.unwrap();
    assert_eq!(left.unconfirmed_shares, vec![g(2)]);
    assert!(
        ks.confirm_generation("dev", "vault", 3, &first_byte)
            .await
            .is_err(),
        "not stored"
    );

    let backup = std::fs::read(dir.path().join(g(1).path())).unwrap();
    assert_eq!(
        ks.confirm_generation("dev", "vault", 2, &first_byte)
            .await
            .unwrap(),
        vec![1]
    );
    assert_eq!(ks.share_generations("dev", "vault").await.unwrap(), vec![2]);
    assert!(
        ks.confirm_generation("dev", "vault", 1, &first_byte)
            .await
            .is_err(),
        "no going back"
    );

    // An interrupted deletion leaves generation 1 behind: reported, then cleaned.
    std::fs::write(dir.path().join(g(1).path()), &backup).unwrap();
    let left = ks.leftovers().await.unwrap();
    assert_eq!(left.superseded_shares, vec![g(1)]);
    ks.clean_leftovers().await.unwrap();
    assert!(ks.leftovers().await.unwrap().is_empty());
    assert_eq!(ks.get(&g(2)).await.unwrap().unwrap().as_slice(), b"gen 2");
}

#[tokio::test]
async fn a_device_that_leaves_the_signer_set_destroys_its_old_shares() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
        .await
        .unwrap();
    let g = |n| RecordId::key_share("dev", "vault", n).unwrap();
    ks.put(&g(0), b"gen 0").await.unwrap();
    ks.confirm_generation("dev", "vault", 0, &first_byte)
        .await
        .unwrap();
    assert!(
        ks.confirm_departure("dev", "vault", 0, b"g").await.is_err(),
        "generation 0 is the one it holds"
    );
    assert_eq!(
        ks.confirm_departure("dev", "vault", 1, b"g").await.unwrap(),
        vec![0]
    );
    assert!(ks.get(&g(0)).await.unwrap().is_none());
    assert!(!dir.path().join(g(0).path()).exists());
    assert_eq!(ks.confirmed_generation("dev", "vault").await.unwrap(), Some(1));
    assert_eq!(
        ks.confirmed_public_key("dev", "vault").await.unwrap(),
        Some(b"g".to_vec())
    );
    assert!(ks.leftovers().await.unwrap().is_empty());
    assert!(
        ks.confirm_departure("dev", "vault", 0, b"g").await.is_err(),
        "no going back"
    );
}

/// The "public key" of a test share record: its first byte.
fn first_byte(record: &[u8]) -> Option<Vec<u8>> {
    record.first().map(|b| vec![*b])
}

#[tokio::test]
async fn a_share_of_another_key_is_never_confirmed_over_the_confirmed_one() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
        .await
        .unwrap();
    let g = |n| RecordId::key_share("dev", "vault", n).unwrap();
    ks.put(&g(0), b"A: the vault key").await.unwrap();
    ks.confirm_generation("dev", "vault", 0, &first_byte)
        .await
        .unwrap();
    // A "successor" of another key (a keygen that reused the vault id, a reshare of
    // fabricated dealers): confirming it would destroy the real key.
    ks.put(&g(1), b"B: another key").await.unwrap();
    let refused = ks
        .confirm_generation("dev", "vault", 1, &first_byte)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("a share of another key"),
        "{refused}"
    );
    assert_eq!(
        ks.get(&g(0)).await.unwrap().unwrap().as_slice(),
        b"A: the vault key"
    );
    // An unreadable one neither.
    ks.put(&g(2), b"").await.unwrap();
    assert!(ks
        .confirm_generation("dev", "vault", 2, &first_byte)
        .await
        .is_err());
    // A successor of the same key is confirmed, and the older generations go.
    ks.put(&g(3), b"A: reshared").await.unwrap();
    assert_eq!(
        ks.confirm_generation("dev", "vault", 3, &first_byte)
            .await
            .unwrap(),
        vec![0, 1, 2]
    );
}

#[tokio::test]
async fn pending_reshare_records_go_when_a_generation_as_new_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let ks = Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
        .await
        .unwrap();
    let g = |n| RecordId::key_share("dev", "vault", n).unwrap();
    let pending = |n| RecordId::pending_reshare("dev", "vault", n).unwrap();
    ks.put(&g(0), b"A0").await.unwrap();
    ks.confirm_generation("dev", "vault", 0, &first_byte)
        .await
        .unwrap();
    for n in [1, 2, 4] {
        ks.put(&pending(n), b"{}").await.unwrap();
    }
    ks.put(&g(2), b"A2").await.unwrap();
    ks.confirm_generation("dev", "vault", 2, &first_byte)
        .await
        .unwrap();
    assert_eq!(ks.pending_reshares("dev", "vault").await.unwrap(), vec![4]);
    assert!(ks.put(&pending(4), b"again").await.is_err(), "written once");
}

#[tokio::test]
async fn key_file_and_sgx_sealing_providers() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("store");
    let url = url.to_str().unwrap();
    let key = KeyFile::create(dir.path().join("k1")).unwrap();
    assert!(
        KeyFile::create(dir.path().join("k1")).is_err(),
        "never replaces a key file"
    );
    let ks = Keystore::open(url, &key).await.unwrap();
    ks.put(&RecordId::identity("d").unwrap(), b"id").await.unwrap();
    let other = KeyFile::create(dir.path().join("k2")).unwrap();
    assert!(matches!(
        Keystore::open_existing(url, &other).await.unwrap_err(),
        KeystoreError::WrongKey { .. }
    ));
    std::fs::write(dir.path().join("short"), b"short").unwrap();
    assert!(
        Keystore::open_existing(url, &KeyFile::new(dir.path().join("short")))
            .await
            .is_err()
    );

    // The Gramine sealing key is a file inside the enclave; here a stand-in file.
    let sealed = dir.path().join("sgx-store");
    let sealed = sealed.to_str().unwrap();
    std::fs::write(dir.path().join("mrenclave"), [7u8; 16]).unwrap();
    let ks = Keystore::open(sealed, &SgxSealing::at(dir.path().join("mrenclave")))
        .await
        .unwrap();
    ks.put(&RecordId::identity("d").unwrap(), b"id").await.unwrap();
    std::fs::write(dir.path().join("other-enclave"), [8u8; 16]).unwrap();
    let err = Keystore::open_existing(sealed, &SgxSealing::at(dir.path().join("other-enclave")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeystoreError::WrongKey { .. }),
        "another enclave cannot unseal"
    );
    let err = Keystore::open_existing(sealed, &SgxSealing::at("/nonexistent/_sgx_mrenclave"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not inside a Gramine enclave"), "{err}");
}

#[tokio::test]
async fn debug_output_hides_secrets() {
    let ks = Keystore::open("memory://", &pass("hunter2")).await.unwrap();
    let shown = format!("{ks:?} {:?}", pass("hunter2"));
    assert!(
        !shown.contains("hunter2") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_of_one_presignature_return_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let ks = std::sync::Arc::new(
        Keystore::open(dir.path().to_str().unwrap(), &pass("p"))
            .await
            .unwrap(),
    );
    for round in 0..20 {
        let id = RecordId::presignature("dev", "vault", &format!("ps-{round}")).unwrap();
        ks.put(&id, b"presignature").await.unwrap();
        let takes: Vec<_> = (0..8)
            .map(|_| {
                let (ks, id) = (ks.clone(), id.clone());
                tokio::spawn(async move { ks.take(&id).await.unwrap() })
            })
            .collect();
        let mut got = 0;
        for t in takes {
            got += usize::from(t.await.unwrap().is_some());
        }
        assert_eq!(got, 1, "round {round}: a presignature was handed out {got} times");
    }
}

/// `STORAGE_BUCKET_URL = "signer-data"` (a relative directory that does not exist yet) is
/// the documented default: it must be created.
#[tokio::test]
async fn a_relative_directory_that_does_not_exist_is_created() {
    let name = format!("test-keystore-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&name);
    let result = Keystore::open(&name, &pass("p")).await;
    let created = std::path::Path::new(&name).join("keystore.json").exists();
    let _ = std::fs::remove_dir_all(&name);
    result.unwrap();
    assert!(created);
}

#[tokio::test]
async fn a_rekey_seals_the_same_data_key_anew_without_rewriting_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let mut ks = Keystore::open(url, &pass("first passphrase")).await.unwrap();
    let id = RecordId::key_share("dev", "v", 1).unwrap();
    ks.put(&id, b"share").await.unwrap();
    let record = std::fs::read(dir.path().join(id.path())).unwrap();

    // A new passphrase: the old one no longer opens it, the new one does.
    ks.rekey(&pass("second passphrase")).await.unwrap();
    let err = Keystore::open_existing(url, &pass("first passphrase"))
        .await
        .unwrap_err();
    assert!(matches!(err, KeystoreError::WrongKey { .. }), "{err}");
    let reopened = Keystore::open_existing(url, &pass("second passphrase"))
        .await
        .unwrap();
    assert_eq!(reopened.get(&id).await.unwrap().unwrap().as_slice(), b"share");
    // The same process keeps using its open keystore.
    assert_eq!(ks.get(&id).await.unwrap().unwrap().as_slice(), b"share");

    // Another kind of sealing: a key file.
    let key = dir.path().join("key");
    ks.rekey(&KeyFile::create(&key).unwrap()).await.unwrap();
    assert_eq!(ks.provider(), "key-file");
    let err = Keystore::open_existing(url, &pass("second passphrase"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("sealed by the key-file provider"),
        "{err}"
    );
    let reopened = Keystore::open_existing(url, &KeyFile::new(&key)).await.unwrap();
    assert_eq!(reopened.get(&id).await.unwrap().unwrap().as_slice(), b"share");

    // No record was rewritten.
    assert_eq!(std::fs::read(dir.path().join(id.path())).unwrap(), record);
}
