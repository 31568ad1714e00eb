//! A hostile broker and hostile participants: forged, impersonated, replayed, misdirected,
//! oversized and garbled envelopes are refused with the claimed sender named, never panic,
//! and do not stop an honest run; a correctly signed bad envelope aborts the run naming its
//! signer.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use proptest::prelude::*;
use rand::RngCore;
use rand_core::OsRng;
use vsigner_transport::envelope::{self, EnvelopeHeader, Expectation, Recipient};
use vsigner_transport::topics::Topics;
use vsigner_transport::{DeviceId, DeviceIdentity, Link, Rejection, SessionReport};
use vsigner_tss::schnorr::{self, Ed25519};
use vsigner_tss::{ExecutionId, ProtocolTag};

use crate::common::{self, devices, eventually, spec, Attacker};

const IDLE: Duration = Duration::from_secs(30);

/// An identity that claims `claimed`'s device id but holds `real`'s keys: a participant
/// impersonating another.
fn impersonate(real: &DeviceIdentity, claimed: &DeviceId) -> DeviceIdentity {
    let bytes = real.to_bytes();
    let id_len = usize::from(bytes[5]);
    let mut forged = bytes[..5].to_vec();
    forged.push(claimed.as_str().len() as u8);
    forged.extend_from_slice(claimed.as_str().as_bytes());
    forged.extend_from_slice(&bytes[6 + id_len..]);
    DeviceIdentity::from_bytes(&forged).unwrap()
}

fn header(
    eid: ExecutionId,
    round: u16,
    seq: u32,
    from: &DeviceIdentity,
    to: Option<&DeviceIdentity>,
) -> EnvelopeHeader {
    EnvelopeHeader {
        execution_id: eid,
        round,
        seq,
        sender: from.device_id().clone(),
        sender_party: party_of(from),
        recipient: match to {
            Some(d) => Recipient::Party {
                device: d.device_id().clone(),
                index: party_of(d),
            },
            None => Recipient::Broadcast,
        },
    }
}

/// The party a test device runs: the number its name ends with (`…-<i>`), 0 otherwise.
fn party_of(d: &DeviceIdentity) -> u16 {
    d.device_id()
        .as_str()
        .rsplit('-')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

async fn frost_keygen(links: &[&Link], devs: &[Arc<DeviceIdentity>], eid: ExecutionId) -> Vec<SessionReport> {
    let sessions: Vec<_> = links
        .iter()
        .map(|l| l.open_session(spec(eid, devs, IDLE)).unwrap())
        .collect();
    let reports = sessions.iter().map(|s| s.report()).collect();
    let n = devs.len() as u16;
    let results = join_all(sessions.into_iter().enumerate().map(|(i, s)| {
        let party = s.into_party();
        async move { schnorr::keygen::<Ed25519, _, _>(party, eid, i as u16, n, 2, &mut OsRng).await }
    }))
    .await;
    let keys: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().public_key_bytes().unwrap())
        .collect();
    assert!(keys.iter().all(|k| k == &keys[0]));
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_envelopes_are_refused_and_the_honest_run_completes() {
    let url = common::embedded_broker();
    let devs = devices(3, "hostile");
    let outsider = &devices(1, "outsider")[0];
    let (a, b, c) = (&devs[0], &devs[1], &devs[2]);
    let mut config = common::config(&url);
    config.limits.max_envelope = 256 * 1024;
    let link_a = Link::connect(a.clone(), config).await.unwrap();
    // A knows B and C (their verified records), as a device knows the devices of an
    // operation it voted on.
    link_a.learn_peers(
        devs[1..]
            .iter()
            .map(|d| (d.device_id().clone(), d.public_keys().clone())),
    );
    let others = common::connect(&url, &devs[1..]).await;
    let attacker = Attacker::connect(&url, &[]).await;
    let inbox_a = Topics::default().inbox(a.device_id());
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let other_eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);

    // Forged: claims to be B, signed by a key that is not B's.
    let forger = DeviceIdentity::generate(b.device_id().clone(), &mut OsRng);
    let forged = envelope::seal(&forger, &header(eid, 0, 0, &forger, None), b"x", None, &mut OsRng).unwrap();
    // Impersonation: participant C signs with its own key but claims to be B.
    let c_as_b = impersonate(c, b.device_id());
    let impersonated =
        envelope::seal(&c_as_b, &header(eid, 0, 1, &c_as_b, None), b"x", None, &mut OsRng).unwrap();
    // A correctly signed envelope from a device that is not a participant.
    let stranger = envelope::seal(
        outsider,
        &header(eid, 0, 0, outsider, None),
        b"x",
        None,
        &mut OsRng,
    )
    .unwrap();
    // B's genuine signature, another execution: must never reach this run.
    let elsewhere = envelope::seal(b, &header(other_eid, 0, 0, b, None), b"x", None, &mut OsRng).unwrap();
    // A valid envelope with one byte of its body flipped.
    let mut tampered = envelope::seal(
        b,
        &header(eid, 0, 9, b, Some(a)),
        b"share",
        Some(a.public_keys()),
        &mut OsRng,
    )
    .unwrap();
    let mid = tampered.len() - 70;
    tampered[mid] ^= 0x40;
    // Garbage and an oversized blob.
    let mut garbage = vec![0u8; 1000];
    OsRng.fill_bytes(&mut garbage);
    let oversized = vec![7u8; 512 * 1024];

    for bytes in [
        forged,
        impersonated,
        stranger,
        elsewhere,
        tampered,
        garbage,
        oversized,
    ] {
        attacker.send(&inbox_a, bytes).await;
    }
    // All seven are for runs A has not opened. Only B's genuinely signed envelope (for
    // another run) waits; everything else is refused as it arrives, before any buffering.
    eventually("A's inbox saw all seven", || {
        let s = link_a.stats();
        s.inbox.buffered == 1 && s.inbox.rejected == 6
    })
    .await;
    let orphans = link_a.rejections();
    assert!(orphans.iter().any(|r| matches!(r, Rejection::Oversized { size, limit } if *size == 512 * 1024 && *limit == 256 * 1024)), "{orphans:?}");
    assert!(
        orphans.iter().any(|r| matches!(r, Rejection::Malformed(_))),
        "{orphans:?}"
    );
    let bad_sig_b = orphans
        .iter()
        .filter(
            |r| matches!(r, Rejection::BadSignature { claimed_sender } if claimed_sender == b.device_id()),
        )
        .count();
    assert_eq!(
        bad_sig_b, 3,
        "forged, impersonated and tampered envelopes: {orphans:?}"
    );
    assert!(orphans.iter().any(
        |r| matches!(r, Rejection::UnknownSender { claimed_sender } if claimed_sender == outsider.device_id())
    ), "{orphans:?}");

    // The honest run is not disturbed by any of it.
    let links = [&link_a, &others[0], &others[1]];
    let reports = frost_keygen(&links, &devs, eid).await;
    let refused = reports[0].rejections();
    assert!(refused.is_empty(), "nothing reached the run: {refused:?}");
    assert_eq!(
        reports[0].culprit(),
        None,
        "nothing provable against any participant"
    );
    assert!(orphans.iter().all(|r| !r.to_string().is_empty()));
    // The other execution's envelope is still waiting for its own run.
    assert_eq!(link_a.stats().inbox.buffered, 1);
    let shown = format!(
        "{}",
        Rejection::BadSignature {
            claimed_sender: b.device_id().clone()
        }
    );
    assert!(shown.contains(b.device_id().as_str()), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_an_earlier_run_and_duplicate_deliveries_are_dropped() {
    let url = common::embedded_broker();
    let devs = devices(3, "replay");
    let links = common::connect(&url, &devs).await;
    let inbox_a = Topics::default().inbox(devs[0].device_id());
    let mut attacker = Attacker::connect(&url, std::slice::from_ref(&inbox_a)).await;
    let refs: Vec<&Link> = links.iter().collect();

    let first = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    frost_keygen(&refs, &devs, first).await;
    let mut recorded = Vec::new();
    eventually("the attacker recorded A's traffic", || {
        while let Ok((_, bytes)) = attacker.captured.try_recv() {
            recorded.push(bytes);
        }
        recorded.len() >= 4
    })
    .await;

    // Replay the first run into A's inbox: A has finished it and says so.
    for bytes in &recorded {
        attacker.send(&inbox_a, bytes.clone()).await;
    }
    eventually("A refused every replayed envelope", || {
        link_rejections(&links[0], |r| matches!(r, Rejection::FinishedExecution { .. })) >= recorded.len()
    })
    .await;
    assert!(links[0].rejections().iter().all(|r| match r {
        Rejection::FinishedExecution { claimed_sender } => claimed_sender != devs[0].device_id(),
        _ => true,
    }));

    // A second run, during which the broker delivers everything to A twice.
    let second = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let client = attacker.client.clone();
    let mut captured = std::mem::replace(&mut attacker.captured, tokio::sync::mpsc::unbounded_channel().1);
    let topic = inbox_a.clone();
    // The attacker also receives its own re-publications: send each envelope once more only.
    let mut seen: std::collections::HashSet<Vec<u8>> = recorded.iter().cloned().collect();
    let doubler = tokio::spawn(async move {
        while let Some((_, bytes)) = captured.recv().await {
            if seen.insert(bytes.clone()) {
                let _ = client
                    .publish(&topic, rumqttc::QoS::AtLeastOnce, false, bytes)
                    .await;
            }
        }
    });
    let duplicates_before = links[0].stats().inbox.duplicates;
    let reports = frost_keygen(&refs, &devs, second).await;
    eventually("A dropped the duplicates", || {
        links[0].stats().inbox.duplicates > duplicates_before
    })
    .await;
    doubler.abort();
    assert_eq!(reports[0].culprit(), None);
}

fn link_rejections(link: &Link, pred: impl Fn(&Rejection) -> bool) -> usize {
    link.rejections().iter().filter(|r| pred(r)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_bad_envelope_aborts_the_run_naming_its_signer() {
    let url = common::embedded_broker();
    let devs = devices(3, "culprit");
    let (a, b, c) = (&devs[0], &devs[1], &devs[2]);
    let link_a = Link::connect(a.clone(), common::config(&url)).await.unwrap();
    // A knows B and C (their verified records): B's early envelopes are kept for the runs.
    link_a.learn_peers(
        devs[1..]
            .iter()
            .map(|d| (d.device_id().clone(), d.public_keys().clone())),
    );
    let attacker = Attacker::connect(&url, &[]).await;
    let inbox_a = Topics::default().inbox(a.device_id());

    // B signs a p2p envelope for A but encrypts it to C's key: only B could have made it.
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let bad = envelope::seal(
        b,
        &header(eid, 2, 0, b, Some(a)),
        b"share",
        Some(c.public_keys()),
        &mut OsRng,
    )
    .unwrap();
    attacker.send(&inbox_a, bad).await;
    eventually("buffered", || link_a.stats().inbox.buffered == 1).await;
    let session = link_a.open_session(spec(eid, &devs, IDLE)).unwrap();
    let report = session.report();
    let err = schnorr::keygen::<Ed25519, _, _>(session.into_party(), eid, 0, 3, 2, &mut OsRng)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(b.device_id().as_str()), "{err}");
    assert_eq!(report.culprit().as_ref(), Some(b.device_id()));

    // B signs a round number no protocol has: the transport aborts the run naming B.
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let bad = envelope::seal(b, &header(eid, 77, 0, b, None), b"\xa0", None, &mut OsRng).unwrap();
    attacker.send(&inbox_a, bad).await;
    eventually("buffered", || link_a.stats().inbox.buffered == 1).await;
    let session = link_a.open_session(spec(eid, &devs, IDLE)).unwrap();
    let report = session.report();
    let err = schnorr::keygen::<Ed25519, _, _>(session.into_party(), eid, 0, 3, 2, &mut OsRng)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("impossible round 77"), "{err}");
    assert_eq!(report.culprit().as_ref(), Some(b.device_id()));

    // B signs a well-formed envelope for a round this protocol does not have: the engine's
    // checks abort the run naming B's party index.
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let bad = envelope::seal(b, &header(eid, 20, 0, b, None), b"\xa0", None, &mut OsRng).unwrap();
    attacker.send(&inbox_a, bad).await;
    eventually("buffered", || link_a.stats().inbox.buffered == 1).await;
    let session = link_a.open_session(spec(eid, &devs, IDLE)).unwrap();
    let err = schnorr::keygen::<Ed25519, _, _>(session.into_party(), eid, 0, 3, 2, &mut OsRng)
        .await
        .unwrap_err();
    assert_eq!(err.culprits(), vec![1], "{err}");

    // A run whose peers never come ends at the idle timeout instead of hanging.
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    let session = link_a
        .open_session(spec(eid, &devs, Duration::from_millis(500)))
        .unwrap();
    let err = schnorr::keygen::<Ed25519, _, _>(session.into_party(), eid, 0, 3, 2, &mut OsRng)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no message"), "{err}");
}

#[test]
fn envelopes_for_another_execution_or_recipient_are_refused() {
    let devs = devices(3, "unit");
    let (a, b, c) = (&devs[0], &devs[1], &devs[2]);
    let participants: Vec<_> = devs
        .iter()
        .map(|d| (d.device_id().clone(), d.public_keys().clone()))
        .collect();
    let eid = ExecutionId::from_bytes([1; 32]);
    let expect = Expectation {
        me: a,
        execution_id: &eid,
        participants: &participants,
        my_parties: &[0],
        max_envelope: 1 << 20,
    };
    let other = ExecutionId::from_bytes([2; 32]);
    let bytes = envelope::seal(b, &header(other, 0, 0, b, None), b"x", None, &mut OsRng).unwrap();
    assert_eq!(
        envelope::open(&bytes, &expect).unwrap_err(),
        Rejection::WrongExecution {
            claimed_sender: b.device_id().clone()
        }
    );
    let to_c = envelope::seal(
        b,
        &header(eid, 0, 0, b, Some(c)),
        b"x",
        Some(c.public_keys()),
        &mut OsRng,
    )
    .unwrap();
    assert!(matches!(
        envelope::open(&to_c, &expect).unwrap_err(),
        Rejection::WrongRecipient { .. }
    ));
    let ok = envelope::seal(b, &header(eid, 0, 0, b, None), b"x", None, &mut OsRng).unwrap();
    assert_eq!(envelope::open(&ok, &expect).unwrap().sender_index, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Decoding arbitrary bytes, or a valid envelope with arbitrary bytes overwritten,
    /// returns an error and never panics.
    #[test]
    fn decoding_never_panics(random in proptest::collection::vec(any::<u8>(), 0..600),
                             edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8)) {
        let devs = fixed_devices();
        let participants: Vec<_> = devs.iter().map(|d| (d.device_id().clone(), d.public_keys().clone())).collect();
        let eid = ExecutionId::from_bytes([1; 32]);
        let expect = Expectation { me: &devs[0], execution_id: &eid, participants: &participants, my_parties: &[0], max_envelope: 1 << 16 };
        prop_assert!(envelope::open(&random, &expect).is_err());
        let mut valid = envelope::seal(&devs[1], &header(eid, 1, 3, &devs[1], Some(&devs[0])), b"payload",
            Some(devs[0].public_keys()), &mut OsRng).unwrap();
        let original = valid.clone();
        for (at, byte) in edits {
            let i = usize::from(at) % valid.len();
            valid[i] = byte;
        }
        let result = envelope::open(&valid, &expect);
        if valid == original {
            prop_assert!(result.is_ok());
        } else {
            prop_assert!(result.is_err());
        }
    }
}

fn fixed_devices() -> &'static [DeviceIdentity] {
    static DEVICES: std::sync::OnceLock<Vec<DeviceIdentity>> = std::sync::OnceLock::new();
    DEVICES.get_or_init(|| {
        ["p-0", "p-1"]
            .iter()
            .map(|id| DeviceIdentity::generate(DeviceId::new(*id).unwrap(), &mut OsRng))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_above_the_packet_limit_does_not_make_a_device_deaf() {
    // Mosquitto keeps persistent sessions and redelivers unacknowledged messages: the case
    // where a naive client would loop forever. The embedded broker when Mosquitto is absent.
    let url = common::mosquitto().unwrap_or_else(common::embedded_broker);
    let devs = devices(3, "deaf");
    let mut config = common::config(&url);
    config.limits.max_envelope = 256 * 1024;
    config.limits.max_packet = 1024 * 1024;
    let link_a = Link::connect(devs[0].clone(), config).await.unwrap();
    let others = common::connect(&url, &devs[1..]).await;
    let attacker = Attacker::connect(&url, &[]).await;
    attacker
        .send(
            &Topics::default().inbox(devs[0].device_id()),
            vec![0u8; 2 * 1024 * 1024],
        )
        .await;
    eventually("A's link dropped the oversized packet and reconnected", || {
        let s = link_a.stats();
        s.reconnects >= 1 && s.connected
    })
    .await;
    // Still connected a moment later (not looping), and a run works.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(link_a.stats().connected);
    let reconnects = link_a.stats().reconnects;
    let eid = common::eid(ProtocolTag::SchnorrKeygen, &devs);
    frost_keygen(&[&link_a, &others[0], &others[1]], &devs, eid).await;
    assert_eq!(link_a.stats().reconnects, reconnects, "the link is stable");
}

/// Finding 3 of [trust-identity]: an envelope of a run not open yet is buffered only once
/// its signature verifies under the key of a peer the device knows, within a quota per
/// sender. A stranger's flood of 10,000 envelopes (unknown senders, forged signatures in a
/// peer's name, a non-participant's own signature) is dropped as it arrives: it neither
/// pushes out nor delays a peer's first message, sent before the run opened here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_flood_cannot_push_out_a_peers_early_message() {
    use futures::{SinkExt, StreamExt};
    use round_based::{MessageDestination, Outgoing};
    use vsigner_tss::WireMessage;

    let url = common::embedded_broker();
    let devs = devices(2, "flood");
    let (a, b) = (&devs[0], &devs[1]);
    let links = common::connect(&url, &devs).await;
    // B knows A's keys (from A's verified record), as a device knows the devices of an
    // operation it voted on before the run starts.
    links[1].learn_peers([(a.device_id().clone(), a.public_keys().clone())]);
    let attacker = Attacker::connect(&url, &[]).await;
    let inbox_b = Topics::default().inbox(b.device_id());
    let eid = common::eid(ProtocolTag::SchnorrSign, &devs);

    // A opens the run and sends its first message before B has opened it.
    let (_a_in, mut a_out) = links[0]
        .open_session(spec(eid, &devs, IDLE))
        .unwrap()
        .into_delivery();
    a_out
        .send(Outgoing {
            recipient: MessageDestination::OneParty(1),
            msg: WireMessage {
                execution_id: eid,
                round: 0,
                payload: b"A's first message".to_vec(),
            },
        })
        .await
        .unwrap();
    eventually("B holds A's early message", || {
        links[1].stats().inbox.buffered == 1
    })
    .await;

    // The flood, each envelope for a run B does not know.
    let outsider = &devices(1, "outsider")[0];
    let forger = DeviceIdentity::generate(a.device_id().clone(), &mut OsRng);
    let rejected_before = links[1].stats().inbox.rejected;
    for i in 0..10_000u32 {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let other = ExecutionId::from_bytes(id);
        let from: &DeviceIdentity = match i % 3 {
            0 => &DeviceIdentity::generate(DeviceId::new(format!("nobody-{i}")).unwrap(), &mut OsRng),
            1 => &forger,
            _ => outsider,
        };
        let bytes = envelope::seal(
            from,
            &header(other, 0, i, from, Some(b)),
            b"flood",
            Some(b.public_keys()),
            &mut OsRng,
        )
        .unwrap();
        attacker.send(&inbox_b, bytes).await;
    }
    eventually("B dropped the whole flood", || {
        links[1].stats().inbox.rejected >= rejected_before + 10_000
    })
    .await;
    assert_eq!(
        links[1].stats().inbox.buffered,
        1,
        "nothing of the flood is buffered"
    );

    // B opens the run: A's first message is there, at once.
    let (mut b_in, _b_out) = links[1]
        .open_session(spec(eid, &devs, Duration::from_secs(5)))
        .unwrap()
        .into_delivery();
    let first = tokio::time::timeout(Duration::from_secs(5), b_in.next())
        .await
        .expect("A's early message was lost")
        .unwrap()
        .unwrap();
    assert_eq!(first.sender, 0);
    assert_eq!(first.msg.payload, b"A's first message");
}
