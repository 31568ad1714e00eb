//! Shared helpers: fixtures, execution ids, honest runs of each protocol.

use std::path::PathBuf;

use rand_core::OsRng;
use vsigner_tss::ecdsa::{self, AuxInfo, CoreShare, EcdsaCurve, KeyShare, Message};
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::primes::{PrimePoolFile, PrimeSet};
use vsigner_tss::schnorr::{self, SchnorrScheme, TaprootTweak};
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag};

/// `test-data/` at the workspace root.
pub(crate) fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

/// The committed public test prime pool.
pub(crate) fn test_prime_sets() -> Vec<PrimeSet> {
    let text = std::fs::read_to_string(test_data().join("primes/public-test-pool.json")).unwrap();
    let file: PrimePoolFile = serde_json::from_str(&text).unwrap();
    file.into_sets().unwrap()
}

/// Committed aux-info for a test device set of `n` (made by `vsigner dev aux-fixtures`).
pub(crate) fn test_aux_info(n: u16) -> Vec<AuxInfo> {
    (0..n)
        .map(|i| {
            let path = test_data().join(format!("aux-info/n{n}/party-{i}.vsgn"));
            AuxInfo::from_bytes(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .unwrap()
        })
        .collect()
}

/// A fresh execution id for a run of `protocol` among `n` parties.
pub(crate) fn eid(protocol: ProtocolTag, operation: &str, n: usize) -> ExecutionId {
    let devices: Vec<String> = (0..n).map(|i| format!("device-{i}")).collect();
    let ids: Vec<&str> = devices.iter().map(String::as_str).collect();
    ExecutionId::derive(&ExecutionContext {
        protocol,
        operation_id: operation,
        vault_id: "vault",
        participants: &ids,
        nonce: b"0",
    })
}

/// ECDSA keygen among `n` parties (round_based simulator).
pub(crate) fn ecdsa_keygen<E: EcdsaCurve>(n: u16, t: u16) -> Vec<CoreShare<E>> {
    let eid = eid(ProtocolTag::EcdsaKeygen, "keygen", n.into());
    round_based::sim::run(n, |i, party| async move {
        ecdsa::keygen::<E, _, _>(party, eid, i, n, t, &mut OsRng).await
    })
    .unwrap()
    .expect_ok()
    .into_vec()
}

/// Complete ECDSA key shares for `t`-of-`n` with the committed aux-info.
pub(crate) fn ecdsa_shares<E: EcdsaCurve>(n: u16, t: u16) -> Vec<KeyShare<E>> {
    ecdsa_keygen::<E>(n, t)
        .into_iter()
        .zip(test_aux_info(n))
        .map(|(core, aux)| KeyShare::from_parts(core, aux).unwrap())
        .collect()
}

/// Full ECDSA signing by the committee `signers` (round_based simulator).
pub(crate) fn ecdsa_sign<E>(
    shares: &[KeyShare<E>],
    signers: &[u16],
    message: &Message,
    path: Option<&DerivationPath>,
) -> Vec<ecdsa::Signature>
where
    E: EcdsaCurve,
    cggmp24::generic_ec::NonZero<cggmp24::generic_ec::Point<E>>: cggmp24::generic_ec::coords::AlwaysHasAffineX<E>,
    cggmp24::hd_wallet::Slip10: cggmp24::hd_wallet::HdWallet<E>,
{
    let eid = eid(ProtocolTag::EcdsaSign, "sign", signers.len());
    let t = signers.len() as u16;
    round_based::sim::run(t, |j, party| async move {
        let share = &shares[usize::from(signers[usize::from(j)])];
        ecdsa::sign(party, eid, j, signers, share, message, path, &mut OsRng).await
    })
    .unwrap()
    .expect_ok()
    .into_vec()
}

/// FROST keygen among `n` parties (round_based simulator).
pub(crate) fn schnorr_keygen<C: SchnorrScheme>(n: u16, t: u16) -> Vec<schnorr::KeyShare<C>> {
    let eid = eid(ProtocolTag::SchnorrKeygen, "keygen", n.into());
    round_based::sim::run(n, |i, party| async move {
        schnorr::keygen::<C, _, _>(party, eid, i, n, t, &mut OsRng).await
    })
    .unwrap()
    .expect_ok()
    .into_vec()
}

/// FROST signing by the committee `signers` (round_based simulator).
pub(crate) fn schnorr_sign<C: SchnorrScheme>(
    shares: &[schnorr::KeyShare<C>],
    signers: &[u16],
    message: &[u8],
    taproot: Option<&TaprootTweak>,
) -> Vec<schnorr::Signature> {
    let eid = eid(ProtocolTag::SchnorrSign, "sign", signers.len());
    let t = signers.len() as u16;
    round_based::sim::run(t, |j, party| async move {
        let share = &shares[usize::from(signers[usize::from(j)])];
        schnorr::sign(party, eid, j, signers, share, message, taproot, &mut OsRng).await
    })
    .unwrap()
    .expect_ok()
    .into_vec()
}

/// Asserts that all elements are equal and returns the first.
pub(crate) fn all_equal<T: PartialEq + std::fmt::Debug + Clone>(items: &[T]) -> T {
    let first = items.first().expect("at least one").clone();
    for item in items {
        assert_eq!(*item, first, "parties disagree");
    }
    first
}
