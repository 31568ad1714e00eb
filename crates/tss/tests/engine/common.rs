//! Shared helpers: fixtures, execution ids, honest runs of each protocol.

use std::path::PathBuf;

use rand_core::OsRng;
use vsigner_tss::ecdsa::{self, AuxInfo, CoreShare, EcdsaCurve, KeyShare, Message};
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::primes::{PrimePoolFile, PrimeSet};
use vsigner_tss::schnorr::{self, SchnorrScheme, TaprootTweak};
use vsigner_tss::simulation::local;
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag, WireMessage};

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
    local::ecdsa_keygen(eid(ProtocolTag::EcdsaKeygen, "keygen", n.into()), n, t, || OsRng).unwrap()
}

/// Complete ECDSA key shares for `t`-of-`n` with the committed aux-info.
pub(crate) fn ecdsa_shares<E: EcdsaCurve>(n: u16, t: u16) -> Vec<KeyShare<E>> {
    local::ecdsa_key_shares(ecdsa_keygen::<E>(n, t), test_aux_info(n)).unwrap()
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
    cggmp24::generic_ec::NonZero<cggmp24::generic_ec::Point<E>>:
        cggmp24::generic_ec::coords::AlwaysHasAffineX<E>,
    cggmp24::hd_wallet::Slip10: cggmp24::hd_wallet::HdWallet<E>,
{
    let eid = eid(ProtocolTag::EcdsaSign, "sign", signers.len());
    local::ecdsa_sign(eid, shares, signers, message, path, || OsRng).unwrap()
}

/// FROST keygen among `n` parties (round_based simulator).
pub(crate) fn schnorr_keygen<C: SchnorrScheme>(n: u16, t: u16) -> Vec<schnorr::KeyShare<C>> {
    local::schnorr_keygen(eid(ProtocolTag::SchnorrKeygen, "keygen", n.into()), n, t, || {
        OsRng
    })
    .unwrap()
}

/// FROST signing by the committee `signers` (round_based simulator).
pub(crate) fn schnorr_sign<C: SchnorrScheme>(
    shares: &[schnorr::KeyShare<C>],
    signers: &[u16],
    message: &[u8],
    taproot: Option<&TaprootTweak>,
) -> Vec<schnorr::Signature> {
    let eid = eid(ProtocolTag::SchnorrSign, "sign", signers.len());
    local::schnorr_sign(eid, shares, signers, message, taproot, || OsRng).unwrap()
}

/// Asserts that all elements are equal and returns the first.
pub(crate) fn all_equal<T: PartialEq + std::fmt::Debug + Clone>(items: &[T]) -> T {
    let first = items.first().expect("at least one").clone();
    for item in items {
        assert_eq!(*item, first, "parties disagree");
    }
    first
}

type IdleIncoming = futures::stream::Pending<Result<round_based::Incoming<WireMessage>, std::io::Error>>;
type IdleOutgoing = futures::sink::Drain<round_based::Outgoing<WireMessage>>;

/// A party whose delivery never delivers: for calls that must be refused before any message.
pub(crate) fn idle_party() -> round_based::MpcParty<WireMessage, (IdleIncoming, IdleOutgoing)> {
    round_based::MpcParty::connected((futures::stream::pending(), futures::sink::drain()))
}
