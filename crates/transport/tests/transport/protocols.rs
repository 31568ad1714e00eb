//! Real protocols among three devices over real brokers; every signature is verified by an
//! independent library (`k256`, `ed25519-dalek`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand_core::OsRng;
use vsigner_transport::{DeviceIdentity, Link};
use vsigner_tss::ecdsa::{self, AuxInfoOptions, KeyShare, Message, Secp256k1};
use vsigner_tss::primes::{PrimePoolFile, PrimeSet};
use vsigner_tss::schnorr::{self, Ed25519};
use vsigner_tss::ProtocolTag;

use crate::common::{self, connect, devices, spec};

/// Aux-info rounds compute for tens of seconds; the idle timeout must exceed them.
const IDLE: Duration = Duration::from_secs(120);

fn test_prime_sets() -> Vec<PrimeSet> {
    let text = std::fs::read_to_string(common::test_data().join("primes/public-test-pool.json")).unwrap();
    let file: PrimePoolFile = serde_json::from_str(&text).unwrap();
    file.into_sets().unwrap()
}

fn verify_ecdsa(public_key: &[u8], digest: &[u8; 32], sig: &ecdsa::Signature) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let s = Signature::from_scalars(sig.r, sig.s).unwrap();
    assert!(s.normalize_s().is_none(), "signature is not low-s");
    vk.verify_prehash(digest, &s).expect("ECDSA signature verifies");
    let recovered =
        VerifyingKey::recover_from_prehash(digest, &s, RecoveryId::from_byte(sig.recovery_id).unwrap())
            .unwrap();
    assert_eq!(recovered, vk);
}

/// The committee `members` (indices into `devs`) as the devices of a run, in run order.
fn committee(devs: &[Arc<DeviceIdentity>], members: &[u16]) -> Vec<Arc<DeviceIdentity>> {
    members.iter().map(|&i| devs[usize::from(i)].clone()).collect()
}

async fn ecdsa_keygen_aux_info_sign(url: &str) {
    let devs = devices(3, "ecdsa");
    let links = connect(url, &devs).await;

    let eid = common::eid(ProtocolTag::EcdsaKeygen, &devs);
    let cores = join_all(links.iter().enumerate().map(|(i, link)| {
        let party = link.open_session(spec(eid, &devs, IDLE)).unwrap().into_party();
        async move { ecdsa::keygen::<Secp256k1, _, _>(party, eid, i as u16, 3, 2, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let public_key = cores[0].public_key_bytes();
    assert!(cores.iter().all(|c| c.public_key_bytes() == public_key));

    let eid = common::eid(ProtocolTag::EcdsaAuxInfo, &devs);
    let sets = test_prime_sets();
    let aux = join_all(links.iter().zip(sets).enumerate().map(|(i, (link, set))| {
        let party = link.open_session(spec(eid, &devs, IDLE)).unwrap().into_party();
        let options = AuxInfoOptions {
            precompute_multiexp: false,
        };
        async move { ecdsa::generate_aux_info(party, eid, i as u16, 3, set, options, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let shares: Vec<KeyShare<Secp256k1>> = cores
        .into_iter()
        .zip(aux)
        .map(|(c, a)| KeyShare::from_parts(c, a).unwrap())
        .collect();

    let signers = [0u16, 2];
    let members = committee(&devs, &signers);
    let eid = common::eid(ProtocolTag::EcdsaSign, &members);
    let message = Message::Digest([0x5a; 32]);
    let sigs = join_all(signers.iter().enumerate().map(|(j, &i)| {
        let link = &links[usize::from(i)];
        let party = link.open_session(spec(eid, &members, IDLE)).unwrap().into_party();
        let (share, message, signers) = (&shares[usize::from(i)], &message, &signers);
        async move { ecdsa::sign(party, eid, j as u16, signers, share, message, None, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    for sig in &sigs {
        verify_ecdsa(&public_key, &message.digest(), sig);
    }
    for link in &links {
        let stats = link.stats();
        assert_eq!(stats.inbox.rejected, 0, "{:?}", link.rejections());
        assert!(stats.inbox.delivered > 0);
    }
}

async fn frost_keygen_sign(url: &str) {
    frost_keygen_sign_with(|| common::config(url)).await;
}

/// FROST keygen and a 2-of-3 signature among three devices, each connected with `config()`.
pub(crate) async fn frost_keygen_sign_with(config: impl Fn() -> vsigner_transport::MqttConfig) {
    let devs = devices(3, "frost");
    let mut links: Vec<Link> = Vec::new();
    for device in &devs {
        links.push(Link::connect(device.clone(), config()).await.unwrap());
    }
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let shares = join_all(links.iter().enumerate().map(|(i, link)| {
        let party = link.open_session(spec(eid, &devs, IDLE)).unwrap().into_party();
        async move { schnorr::keygen::<Ed25519, _, _>(party, eid, i as u16, 3, 2, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let public_key: [u8; 32] = shares[0].public_key_bytes().unwrap().try_into().unwrap();

    let signers = [1u16, 2];
    let members = committee(&devs, &signers);
    let eid = common::eid(ProtocolTag::SchnorrSign, &members);
    let message = b"transfer 1 ETH to 0xabc";
    let sigs = join_all(signers.iter().enumerate().map(|(j, &i)| {
        let link = &links[usize::from(i)];
        let party = link.open_session(spec(eid, &members, IDLE)).unwrap().into_party();
        let (share, signers) = (&shares[usize::from(i)], &signers);
        async move { schnorr::sign(party, eid, j as u16, signers, share, message, None, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public_key).unwrap();
    for sig in sigs {
        let sig = ed25519_dalek::Signature::from_slice(&sig.0).unwrap();
        vk.verify_strict(message, &sig)
            .expect("Ed25519 signature verifies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_over_the_embedded_broker() {
    ecdsa_keygen_aux_info_sign(&common::embedded_broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_over_mosquitto() {
    let Some(url) = common::mosquitto() else { return };
    ecdsa_keygen_aux_info_sign(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frost_over_the_embedded_broker() {
    frost_keygen_sign(&common::embedded_broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frost_over_mosquitto() {
    let Some(url) = common::mosquitto() else { return };
    frost_keygen_sign(&url).await;
}

/// A device of weight 2 runs two parties of one run: devices A, B, C hold parties
/// [A, A, B, C]; FROST keygen with threshold 3, then a signature by parties {0, 1, 3}
/// (A's two and C's), A's parties talking to each other through the broker like to anyone.
async fn frost_with_a_weighted_device(url: &str) {
    let devs = devices(3, "weighted");
    let links = connect(url, &devs).await;
    // Party p is run by device `owner[p]`.
    let owner = [0usize, 0, 1, 2];
    let parties: Vec<Arc<DeviceIdentity>> = owner.iter().map(|&d| devs[d].clone()).collect();
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &parties);
    let sessions: Vec<_> = links
        .iter()
        .flat_map(|link| link.open_sessions(spec(eid, &parties, IDLE)).unwrap())
        .collect();
    assert_eq!(
        sessions.iter().map(|s| s.party_index()).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "A opened two sessions, B and C one each"
    );
    let shares = join_all(sessions.into_iter().map(|s| {
        let i = s.party_index();
        let party = s.into_party();
        async move { schnorr::keygen::<Ed25519, _, _>(party, eid, i, 4, 3, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let public_key: [u8; 32] = shares[0].public_key_bytes().unwrap().try_into().unwrap();
    assert!(shares.iter().all(|s| s.public_key_bytes().unwrap() == public_key));

    let signers = [0u16, 1, 3];
    let members = committee(&parties, &signers);
    let eid = common::eid(ProtocolTag::SchnorrSign, &members);
    let message = b"weighted committee";
    let mut runs = Vec::new();
    for link in [&links[0], &links[2]] {
        runs.extend(link.open_sessions(spec(eid, &members, IDLE)).unwrap());
    }
    assert!(
        links[1].open_sessions(spec(eid, &members, IDLE)).is_err(),
        "B runs no party of the signature"
    );
    let sigs = join_all(runs.into_iter().map(|s| {
        let j = s.party_index();
        let share = &shares[usize::from(signers[usize::from(j)])];
        let party = s.into_party();
        async move { schnorr::sign(party, eid, j, &signers, share, message, None, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    assert_eq!(sigs.len(), 3);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public_key).unwrap();
    for sig in sigs {
        let sig = ed25519_dalek::Signature::from_slice(&sig.0).unwrap();
        vk.verify_strict(message, &sig)
            .expect("Ed25519 signature verifies");
    }
    for link in &links {
        let stats = link.stats();
        assert_eq!(stats.inbox.rejected, 0, "{:?}", link.rejections());
    }
    let fresh = common::eid(ProtocolTag::SchnorrSign, &members);
    let refused = links[0].open_session(spec(fresh, &members, IDLE)).unwrap_err();
    assert!(
        refused.to_string().contains("open_sessions"),
        "a device running two parties cannot open just one: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_device_over_the_embedded_broker() {
    frost_with_a_weighted_device(&common::embedded_broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_device_over_mosquitto() {
    let Some(url) = common::mosquitto() else { return };
    frost_with_a_weighted_device(&url).await;
}
