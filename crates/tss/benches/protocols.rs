//! Criterion benchmarks of every protocol, 2-of-3, all parties in one process (figures are
//! the sum of the parties' CPU time). `vsigner bench protocols` gives the 2-of-3 and 3-of-5
//! table with the bare-library comparison.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_core::OsRng;
use vsigner_tss::ecdsa::{AuxInfo, AuxInfoOptions, HashAlgorithm, Message, Preimage, Secp256k1};
use vsigner_tss::primes::PrimePoolFile;
use vsigner_tss::schnorr::{Bip340, Ed25519};
use vsigner_tss::simulation::local;
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag};

const N: u16 = 3;
const T: u16 = 2;

fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

fn eid(tag: ProtocolTag) -> ExecutionId {
    ExecutionId::derive(&ExecutionContext {
        protocol: tag,
        operation_id: "bench",
        vault_id: "bench",
        participants: &["a", "b", "c"],
        nonce: b"",
    })
}

fn aux_fixture() -> Vec<AuxInfo> {
    (0..N)
        .map(|i| {
            let bytes = std::fs::read(test_data().join(format!("aux-info/n{N}/party-{i}.vsgn"))).unwrap();
            AuxInfo::from_bytes(&bytes).unwrap()
        })
        .collect()
}

fn ecdsa(c: &mut Criterion) {
    let mut g = c.benchmark_group("ecdsa_secp256k1_2of3");
    g.sample_size(10);
    g.bench_function("keygen", |b| {
        b.iter(|| local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen), N, T, || OsRng).unwrap())
    });
    let cores = local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen), N, T, || OsRng).unwrap();
    let shares = local::ecdsa_key_shares(cores, aux_fixture()).unwrap();
    let signers = [0u16, 1];
    let digest = Message::Digest([1; 32]);
    g.bench_function("sign_full", |b| {
        b.iter(|| {
            local::ecdsa_sign(
                eid(ProtocolTag::EcdsaSign),
                &shares,
                &signers,
                &digest,
                None,
                || OsRng,
            )
            .unwrap()
        })
    });
    g.bench_function("presign", |b| {
        b.iter(|| local::ecdsa_presign(eid(ProtocolTag::EcdsaPresign), &shares, &signers, || OsRng).unwrap())
    });
    let message = Preimage {
        hash: HashAlgorithm::Sha256,
        data: b"bench".to_vec(),
    };
    g.bench_function("sign_online", |b| {
        b.iter_batched(
            || local::ecdsa_presign(eid(ProtocolTag::EcdsaPresign), &shares, &signers, || OsRng).unwrap(),
            |presigs| {
                local::ecdsa_sign_with_presignatures(eid(ProtocolTag::EcdsaSign), presigs, &message).unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn aux_info(c: &mut Criterion) {
    let text = std::fs::read_to_string(test_data().join("primes/public-test-pool.json")).unwrap();
    let sets = serde_json::from_str::<PrimePoolFile>(&text)
        .unwrap()
        .into_sets()
        .unwrap();
    let mut g = c.benchmark_group("ecdsa_aux_info_n3");
    g.sample_size(10);
    g.bench_function("aux_info", |b| {
        b.iter(|| {
            let options = AuxInfoOptions {
                precompute_multiexp: false,
            };
            local::ecdsa_aux_info(
                eid(ProtocolTag::EcdsaAuxInfo),
                sets[..3].to_vec(),
                options,
                || OsRng,
            )
            .unwrap()
        })
    });
    g.finish();
}

fn frost(c: &mut Criterion) {
    let mut g = c.benchmark_group("frost_2of3");
    let signers = [0u16, 1];
    g.bench_function("ed25519_keygen", |b| {
        b.iter(|| {
            local::schnorr_keygen::<Ed25519, _>(eid(ProtocolTag::SchnorrKeygen), N, T, || OsRng).unwrap()
        })
    });
    let shares =
        local::schnorr_keygen::<Ed25519, _>(eid(ProtocolTag::SchnorrKeygen), N, T, || OsRng).unwrap();
    // The same signing on the bare library (frost calls and frost's own serialization).
    g.bench_function("ed25519_sign_bare", |b| {
        b.iter(|| vsigner_tss::simulation::bare::schnorr_sign(&shares, &signers, b"m", &mut OsRng).unwrap())
    });
    g.bench_function("ed25519_sign", |b| {
        b.iter(|| {
            local::schnorr_sign(
                eid(ProtocolTag::SchnorrSign),
                &shares,
                &signers,
                b"m",
                None,
                || OsRng,
            )
            .unwrap()
        })
    });
    g.bench_function("bip340_keygen", |b| {
        b.iter(|| {
            local::schnorr_keygen::<Bip340, _>(eid(ProtocolTag::SchnorrKeygen), N, T, || OsRng).unwrap()
        })
    });
    let shares = local::schnorr_keygen::<Bip340, _>(eid(ProtocolTag::SchnorrKeygen), N, T, || OsRng).unwrap();
    g.bench_function("bip340_sign", |b| {
        b.iter(|| {
            local::schnorr_sign(
                eid(ProtocolTag::SchnorrSign),
                &shares,
                &signers,
                b"m",
                None,
                || OsRng,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, frost, ecdsa, aux_info);
criterion_main!(benches);
