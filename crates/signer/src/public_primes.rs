//! The fence around the public test primes: `test-data/primes/public-test-pool.json` is
//! committed to the repository so that tests and the demo need not spend minutes on safe
//! primes. A Paillier key made from them protects nothing: whoever reads the broker
//! decrypts a device's round-1 ciphertext `K_i` and, from one signature, learns its key
//! share. `vsigner run` therefore refuses, at start, a keystore holding a prime set,
//! aux-info or ECDSA share whose moduli come from that pool, and every aux-info run refuses
//! such moduli from any member ([`crate::protocol::aux_info`]), unless
//! `AllowPublicTestPrimes = true` (the demo sets it and warns).

use vsigner_keystore::{Keystore, RecordKind};
use vsigner_tss::ecdsa::AuxInfo;
use vsigner_tss::primes::{PrimeSet, PublicTestPrimes};

/// Checks every prime set, aux-info and ECDSA share record of `keystore`; `Err` names the
/// first record made from the public test pool, and the setting.
pub async fn check_keystore(keystore: &Keystore, pool: &PublicTestPrimes) -> Result<(), String> {
    let records = keystore.list().await.map_err(|e| format!("keystore: {e}"))?;
    for info in records {
        let kind = info.id.kind();
        if !matches!(
            kind,
            RecordKind::PrimeSet | RecordKind::AuxInfo | RecordKind::KeyShare
        ) {
            continue;
        }
        let Some(bytes) = keystore
            .get(&info.id)
            .await
            .map_err(|e| format!("keystore: {e}"))?
        else {
            continue;
        };
        let public = match kind {
            RecordKind::PrimeSet => PrimeSet::from_bytes(&bytes).is_ok_and(|set| pool.contains_set(&set)),
            RecordKind::AuxInfo => {
                AuxInfo::from_bytes(&bytes).is_ok_and(|aux| aux.uses_public_test_primes(pool))
            }
            // A key-share record: each of the device's shares in it.
            _ => crate::protocol::share_set::decode(&bytes)
                .unwrap_or_default()
                .into_iter()
                .any(|part| {
                    matches!(
                        crate::protocol::ecdsa::aux_info_of(part),
                        Some(Ok(aux)) if aux.uses_public_test_primes(pool)
                    )
                }),
        };
        if public {
            return Err(format!(
                "the keystore holds {} ({}) made from the public test primes of test-data/primes/public-test-pool.json: \
                 anyone who reads the broker can decrypt its Paillier ciphertexts and learn the key from one signature. \
                 vsigner run refuses it; set AllowPublicTestPrimes = true only for tests and demonstrations",
                match kind {
                    RecordKind::PrimeSet => "a prime set",
                    RecordKind::AuxInfo => "aux-info",
                    _ => "an ECDSA key share",
                },
                info.id
            ));
        }
    }
    Ok(())
}
