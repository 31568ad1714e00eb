//! The prime stock: sets are persisted, handed out once, never twice (even across a reopen).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use vsigner_keystore::{Keystore, Passphrase};
use vsigner_signer::prime_stock::PrimeStock;
use vsigner_tss::primes::PrimePoolFile;

fn test_sets() -> Vec<vsigner_tss::primes::PrimeSet> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/primes/public-test-pool.json");
    let file: PrimePoolFile = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file.into_sets().unwrap()
}

#[tokio::test]
async fn sets_are_taken_once_and_stay_taken() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_owned();
    let sets = test_sets();
    let encoded: Vec<Vec<u8>> = sets.iter().map(|s| s.to_bytes().unwrap().to_vec()).collect();
    {
        let ks = Arc::new(
            Keystore::open(&url, &Passphrase::new("prime stock test"))
                .await
                .unwrap(),
        );
        let stock = PrimeStock::open(ks.clone()).await.unwrap();
        assert_eq!(stock.ready(), 0);
        assert!(stock.take().await.unwrap().is_none());
        for set in &sets[..2] {
            stock.put(set).await.unwrap();
        }
        assert_eq!(stock.ready(), 2);
        let first = stock.take().await.unwrap().unwrap().to_bytes().unwrap().to_vec();
        assert!(encoded[..2].contains(&first));
        assert_eq!(stock.ready(), 1);
        // Reopened (a restart): the taken set is gone, the other one is there.
        let stock = PrimeStock::open(ks).await.unwrap();
        assert_eq!(stock.ready(), 1);
        let second = stock.take().await.unwrap().unwrap().to_bytes().unwrap().to_vec();
        assert_ne!(first, second);
        assert!(encoded[..2].contains(&second));
        assert!(stock.take().await.unwrap().is_none());
    }
    // The records are encrypted: no prime appears in the files.
    let prime_hex = hex::encode(&encoded[0][encoded[0].len() - 64..]);
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!hex::encode(&bytes).contains(&prime_hex), "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
