//! Keystore backups: a device's records move to a new keystore under another sealing and
//! read back byte for byte; what a restore must not bring back stays out; a wrong
//! passphrase, a changed header, a cut file and a keystore that already holds records are
//! refused in one sentence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vsigner_keystore::backup;
use vsigner_keystore::sealing::Argon2Params;
use vsigner_keystore::{KeyFile, Keystore, Passphrase, RecordId, RecordKind};
use zeroize::Zeroizing;

const LIGHT: Argon2Params = Argon2Params {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

fn pass(p: &str) -> Passphrase {
    Passphrase::with_params(p, LIGHT)
}

fn first_byte(record: &[u8]) -> Option<Vec<u8>> {
    record.first().map(|b| vec![*b])
}

/// A keystore with a device's records: its identity, generation 1 (superseded) and 2
/// (confirmed) of a vault, a pending generation 3, a pin, a run mark, a prime set and a
/// presignature.
async fn source(dir: &std::path::Path) -> Keystore {
    let ks = Keystore::open(dir.to_str().unwrap(), &pass("source passphrase"))
        .await
        .unwrap();
    ks.put(&RecordId::identity("dev").unwrap(), b"identity")
        .await
        .unwrap();
    for g in 1..=3 {
        ks.put(&RecordId::key_share("dev", "vault", g).unwrap(), &[7, g as u8])
            .await
            .unwrap();
    }
    ks.confirm_generation("dev", "vault", 1, &first_byte)
        .await
        .unwrap();
    ks.confirm_generation("dev", "vault", 2, &first_byte)
        .await
        .unwrap();
    ks.put(&RecordId::peer_keys("dev", "peer").unwrap(), b"pinned")
        .await
        .unwrap();
    ks.put(&RecordId::operation_run("dev", "op-1").unwrap(), b"ran")
        .await
        .unwrap();
    ks.put(&RecordId::prime_set("instance", "ps-1").unwrap(), b"primes")
        .await
        .unwrap();
    ks.put(
        &RecordId::presignature("dev", "vault", "pre-1").unwrap(),
        b"presignature",
    )
    .await
    .unwrap();
    ks
}

/// The source keystore (under `tmp/old`) and its backup under "backup passphrase".
async fn exported(tmp: &std::path::Path) -> (Keystore, Zeroizing<Vec<u8>>, backup::BackupSummary) {
    let ks = source(&tmp.join("old")).await;
    let (file, summary) = ks
        .export(&pass("backup passphrase"), "2026-12-06T00:00:00Z")
        .await
        .unwrap();
    (ks, file, summary)
}

#[tokio::test]
async fn a_backup_moves_the_records_to_a_keystore_under_another_sealing() {
    let tmp = tempfile::tempdir().unwrap();
    let (ks, file, summary) = exported(tmp.path()).await;
    assert_eq!((summary.devices, summary.key_shares), (1, 2), "{summary:?}");
    assert_eq!(backup::provider_of(&file).unwrap(), "passphrase");
    let text = String::from_utf8_lossy(&file);
    assert!(
        !text.contains("identity") && !text.contains("pinned"),
        "records are encrypted"
    );

    let records = backup::open(&file, &pass("backup passphrase")).unwrap();
    let kinds: Vec<(RecordKind, Option<u64>)> = records
        .iter()
        .map(|(id, _)| (id.kind(), id.generation()))
        .collect();
    assert!(
        !kinds.iter().any(|(k, _)| *k == RecordKind::Presignature),
        "no presignature"
    );
    assert!(
        !kinds.iter().any(|(k, _)| *k == RecordKind::PrimeSet),
        "no prime set"
    );
    assert!(
        !kinds.contains(&(RecordKind::KeyShare, Some(1))),
        "no superseded share"
    );
    assert!(kinds.contains(&(RecordKind::KeyShare, Some(2))));
    assert!(
        kinds.contains(&(RecordKind::KeyShare, Some(3))),
        "the pending generation"
    );
    assert!(
        kinds.contains(&(RecordKind::OperationRun, None)),
        "run marks travel"
    );

    let key_file = KeyFile::create(tmp.path().join("new.key")).unwrap();
    let new = Keystore::open(tmp.path().join("new").to_str().unwrap(), &key_file)
        .await
        .unwrap();
    new.import(&records).await.unwrap();
    for (id, bytes) in &records {
        assert_eq!(new.get(id).await.unwrap().as_deref(), Some(&**bytes), "{id}");
        assert_eq!(ks.get(id).await.unwrap().as_deref(), Some(&**bytes), "{id}");
    }
    assert_eq!(new.confirmed_generation("dev", "vault").await.unwrap(), Some(2));

    // Again (an interrupted import finished): nothing changes. Into a keystore that holds
    // other records: refused.
    new.import(&records).await.unwrap();
    let other = Keystore::open(tmp.path().join("other").to_str().unwrap(), &pass("other one"))
        .await
        .unwrap();
    other
        .put(&RecordId::identity("someone").unwrap(), b"theirs")
        .await
        .unwrap();
    let err = other.import(&records).await.unwrap_err().to_string();
    assert!(err.contains("new keystore only"), "{err}");
    assert_eq!(other.list().await.unwrap().len(), 1, "nothing was written");
}

#[tokio::test]
async fn a_wrong_key_a_changed_or_cut_file_and_forbidden_records_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ks, file, _) = exported(tmp.path()).await;
    let one_line = |e: vsigner_keystore::KeystoreError| {
        let s = e.to_string();
        assert_eq!(s.lines().count(), 1, "{s}");
        s
    };
    let err = one_line(backup::open(&file, &pass("another passphrase")).unwrap_err());
    assert!(err.contains("wrong passphrase or key"), "{err}");
    // The header is authenticated: a changed date (still valid JSON) is refused.
    let at = file.windows(10).position(|w| w == b"2026-12-06").unwrap();
    let mut changed = file.to_vec();
    changed[at + 9] = b'7';
    let err = one_line(backup::open(&changed, &pass("backup passphrase")).unwrap_err());
    assert!(err.contains("changed or cut"), "{err}");
    let err = one_line(backup::open(&file[..file.len() - 1], &pass("backup passphrase")).unwrap_err());
    assert!(err.contains("changed or cut"), "{err}");
    let err = one_line(backup::open(b"{\"not\":\"a backup\"}", &pass("x")).unwrap_err());
    assert!(err.contains("not a vsigner keystore backup"), "{err}");

    // A backup made by hand with a presignature, or with a superseded share, is refused.
    let new = Keystore::open(tmp.path().join("new").to_str().unwrap(), &pass("new one"))
        .await
        .unwrap();
    let presignature = vec![(
        RecordId::presignature("dev", "vault", "pre-1").unwrap(),
        Zeroizing::new(b"presignature".to_vec()),
    )];
    let err = one_line(new.import(&presignature).await.unwrap_err());
    assert!(err.contains("never restored"), "{err}");
    // The export's records (generation 2 confirmed) and generation 1 added back.
    let mut superseded = backup::open(&file, &pass("backup passphrase")).unwrap();
    superseded.push((
        RecordId::key_share("dev", "vault", 1).unwrap(),
        Zeroizing::new(vec![7, 1]),
    ));
    let err = one_line(new.import(&superseded).await.unwrap_err());
    assert!(err.contains("superseded share"), "{err}");
    assert!(new.list().await.unwrap().is_empty(), "nothing was written");
}

#[tokio::test]
async fn a_header_cannot_ask_for_unbounded_work_before_it_is_authenticated() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ks, file, _) = exported(tmp.path()).await;
    let text = String::from_utf8_lossy(&file).into_owned();
    let header_end = backup::MAGIC.len() + text[backup::MAGIC.len()..].find('\n').unwrap();
    let header = &text[backup::MAGIC.len()..header_end];
    let greedy = header.replace("\"t_cost\":1", "\"t_cost\":1000000");
    assert_ne!(greedy, header);
    let mut forged = backup::MAGIC.to_vec();
    forged.extend_from_slice(greedy.as_bytes());
    forged.extend_from_slice(&file[header_end..]);
    let err = backup::open(&forged, &pass("backup passphrase"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceed"), "{err}");
}

#[tokio::test]
async fn an_import_refuses_duplicates_prime_sets_and_bad_confirmations_and_finishes_only_its_own_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ks, file, _) = exported(tmp.path()).await;
    let records = backup::open(&file, &pass("backup passphrase")).unwrap();
    let fresh = |name: &str| {
        let url = tmp.path().join(name).to_str().unwrap().to_owned();
        async move { Keystore::open(&url, &pass("new one")).await.unwrap() }
    };
    let refused = |ks: Keystore, records: backup::Records, what: &'static str| async move {
        let err = ks.import(&records).await.unwrap_err().to_string();
        assert!(err.contains(what), "{err}");
        assert!(ks.list().await.unwrap().is_empty(), "nothing was written");
    };
    let mut twice = records.clone();
    twice.push(records[0].clone());
    refused(fresh("a").await, twice, "twice").await;
    let mut primes = records.clone();
    primes.push((
        RecordId::prime_set("instance", "ps-1").unwrap(),
        Zeroizing::new(b"primes".to_vec()),
    ));
    refused(fresh("b").await, primes, "used once").await;
    let short: backup::Records = records
        .iter()
        .map(|(id, b)| {
            let b = if id.kind() == RecordKind::ShareConfirmation {
                Zeroizing::new(b[..4].to_vec())
            } else {
                b.clone()
            };
            (id.clone(), b)
        })
        .collect();
    refused(fresh("c").await, short, "malformed").await;

    // An import cut short (some records written, no identity yet) is finished by the same
    // backup, and refused if a present record differs from it.
    let partial = fresh("d").await;
    for (id, bytes) in records
        .iter()
        .filter(|(id, _)| id.kind() != RecordKind::DeviceIdentity)
        .take(2)
    {
        partial.put(id, bytes).await.unwrap();
    }
    partial.import(&records).await.unwrap();
    assert_eq!(partial.list().await.unwrap().len(), records.len());
    let differs = fresh("e").await;
    let (id, _) = records
        .iter()
        .find(|(id, _)| id.kind() == RecordKind::OperationRun)
        .unwrap();
    differs.put(id, b"another run mark").await.unwrap();
    let err = differs.import(&records).await.unwrap_err().to_string();
    assert!(err.contains("new keystore only"), "{err}");
}
