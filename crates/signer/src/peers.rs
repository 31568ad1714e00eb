//! Peer devices' keys: a device encrypts to, and accepts messages from, a peer only under
//! keys the peer itself signed.
//!
//! Every device publishes its own record of its keys ([`SignedDeviceRecord`]: organisation,
//! device id, Ed25519 signing key, X25519 encryption key, revision), signed by its signing
//! key. The coordinator stores and serves the records but cannot make one. Before a device
//! encrypts anything to a peer or accepts its messages it checks the peer's record, as
//! listed by the coordinator: it must verify, name this organisation and that device, and
//! agree with the keys listed beside it. A coordinator that swaps a device's encryption key
//! (to read what peers encrypt to it) is refused, and the device is named.
//!
//! Then the record is checked against the **pin**: the first record seen of a peer is
//! pinned in the keystore (trust on first sight), unless `TrustedDeviceKeys` lists the
//! signing keys allowed; later, the signing key must be the pinned one, a record of the
//! same revision must be the same, and a newer revision (a rotated encryption key) replaces
//! the pin. An older revision is refused.
//!
//! Every vote and run checks its committee's records again. A record listed exactly as a
//! device last accepted it (the same bytes, beside the same keys) is accepted again from
//! [`Pins`] in memory, without verifying it or reading its pin once more: the outcome would
//! be the same, because a pin changes only through a check, and every check of a pin first
//! forgets what [`Pins`] remembers of that peer (under the lock that one pin check at a time
//! holds) and remembers the record again only once it is accepted. A record that differs in
//! any way takes the whole check. A device's own record is always checked.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vsigner_keystore::{Keystore, RecordId, RecordKind};
use vsigner_records::SignedDeviceRecord;
use vsigner_transport::{DeviceId, DeviceIdentity, DevicePublicKeys};

/// What a device knows of a peer, as the coordinator listed it.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// The peer's device id.
    pub device_id: &'a str,
    /// Its signing key, hex.
    pub signing_key: &'a str,
    /// Its encryption key, hex.
    pub encryption_key: &'a str,
    /// Its signed record, hex, if it published one.
    pub record: Option<&'a str>,
}

/// The signing keys an operator allows (`TrustedDeviceKeys`); none means "trust on first
/// sight".
pub type TrustedKeys = BTreeSet<[u8; 32]>;

/// A peer's pinned keys (the keystore's `peer-keys` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pin {
    signing: String,
    encryption: String,
    revision: u64,
}

impl Pin {
    fn of(record: &SignedDeviceRecord) -> Pin {
        Pin {
            signing: hex::encode(record.record.signing_key),
            encryption: hex::encode(record.record.encryption_key),
            revision: record.record.revision,
        }
    }

    /// Reads a pin; the first format (`signing:encryption`, pinned from the coordinator's
    /// listing before records existed) reads as revision 0.
    fn parse(bytes: &[u8]) -> Option<Pin> {
        if let Ok(pin) = serde_json::from_slice(bytes) {
            return Some(pin);
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let (signing, encryption) = text.split_once(':')?;
        Some(Pin {
            signing: signing.to_owned(),
            encryption: encryption.to_owned(),
            revision: 0,
        })
    }
}

/// The pins of one keystore as its daemon checks them: one pin read, checked and written at
/// a time, and the record each device last accepted of each peer (see the module
/// documentation). One per keystore: the daemon is the keystore's only process.
#[derive(Default)]
pub struct Pins {
    /// Held across a pin's read, check and write, and the update of `accepted` after it.
    writing: tokio::sync::Mutex<()>,
    /// By (device, peer): the record (hex) the device last accepted and the keys it names.
    accepted: Mutex<HashMap<(String, String), (String, DevicePublicKeys)>>,
}

impl Pins {
    /// The keys of `peer` if its listing is exactly the record `me` last accepted of it.
    fn accepted(&self, me: &str, peer: &Listed<'_>) -> Option<DevicePublicKeys> {
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        let (record, keys) = accepted.get(&(me.to_owned(), peer.device_id.to_owned()))?;
        (Some(record.as_str()) == peer.record
            && peer.signing_key == keys.signing_hex()
            && peer.encryption_key == keys.encryption_hex())
        .then(|| keys.clone())
    }

    /// Forgets what `me` accepted of `peer`.
    fn forget(&self, me: &str, peer: &str) {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(me.to_owned(), peer.to_owned()));
    }

    /// Remembers that `me` accepted `record` of `peer`, naming `keys`.
    fn accept(&self, me: &str, peer: &str, record: &str, keys: &DevicePublicKeys) {
        self.accepted.lock().unwrap_or_else(|p| p.into_inner()).insert(
            (me.to_owned(), peer.to_owned()),
            (record.to_owned(), keys.clone()),
        );
    }
}

/// Checks `peer`'s record for the device `me` of organisation `org`, then against the pin
/// (pinning it on first sight); returns the peer's keys. `Err` names the device and why.
/// `pins` are the keystore's (one [`Pins`] per keystore, `org` and `trusted` fixed for it).
pub async fn check(
    keystore: &Keystore,
    pins: &Pins,
    me: &DeviceIdentity,
    org: &str,
    trusted: Option<&TrustedKeys>,
    peer: Listed<'_>,
) -> Result<DevicePublicKeys, String> {
    let id = peer.device_id;
    let record_hex = peer.record.ok_or_else(|| {
        format!("device {id} has not published a signed record of its keys; nothing is encrypted to it")
    })?;
    if let Some(keys) = pins.accepted(me.device_id().as_str(), &peer) {
        return Ok(keys);
    }
    let signed = SignedDeviceRecord::from_hex(record_hex)
        .map_err(|e| format!("the record of device {id} is unreadable: {e}"))?;
    signed.verify().map_err(|e| {
        format!("the record of device {id} does not verify ({e}): its keys are not its own word")
    })?;
    let r = &signed.record;
    if r.device_id != id || r.organisation_id != org {
        return Err(format!(
            "the record listed for device {id} is of device {} in organisation {}",
            r.device_id, r.organisation_id
        ));
    }
    let keys = DevicePublicKeys::from_hex(&hex::encode(r.signing_key), &hex::encode(r.encryption_key))
        .map_err(|e| format!("the record of device {id} names an invalid key: {e}"))?;
    if peer.signing_key != keys.signing_hex() || peer.encryption_key != keys.encryption_hex() {
        return Err(format!(
            "the coordinator lists keys for device {id} other than the ones its signed record names"
        ));
    }
    if id == me.device_id().as_str() {
        let own = me.public_keys();
        if own.signing_hex() != keys.signing_hex() || own.encryption_hex() != keys.encryption_hex() {
            return Err(format!(
                "the coordinator lists a record for this device ({id}) with keys that are not its own"
            ));
        }
        // (Not remembered: its own record costs one signature check, and an entry keyed by
        // the id alone could serve another identity under the same id.)
        return Ok(keys);
    }
    if let Some(trusted) = trusted {
        if !trusted.contains(&r.signing_key) {
            return Err(format!(
                "device {id} has signing key {}, which TrustedDeviceKeys does not list",
                keys.signing_hex()
            ));
        }
    }
    let pin_id = RecordId::peer_keys(me.device_id().as_str(), id).map_err(|e| e.to_string())?;
    let _one = pins.writing.lock().await;
    // Forgotten before the pin is read or written, remembered again only once this check
    // accepts: a pin write that fails after it landed leaves nothing stale in memory.
    pins.forget(me.device_id().as_str(), id);
    let pinned = keystore
        .get(&pin_id)
        .await
        .map_err(|e| format!("keystore: {e}"))?
        .map(|bytes| {
            Pin::parse(&bytes).ok_or_else(|| format!("the pinned keys of device {id} are unreadable"))
        })
        .transpose()?;
    let new = Pin::of(&signed);
    match pinned {
        None => {
            keystore
                .put(&pin_id, &serde_json::to_vec(&new).map_err(|e| e.to_string())?)
                .await
                .map_err(|e| format!("cannot pin the keys of device {id}: {e}"))?;
            tracing::info!(peer = %id, revision = new.revision, "signed record of a peer device pinned");
        }
        Some(pin) if pin.signing != new.signing => {
            return Err(format!(
                "device {id} signs with another key than the one this device pinned when it first saw it"
            ))
        }
        Some(pin) if pin.revision > new.revision => {
            return Err(format!(
                "the record of device {id} is revision {}, older than the pinned revision {}",
                new.revision, pin.revision
            ))
        }
        Some(pin) if pin.revision == new.revision && pin.encryption != new.encryption => {
            return Err(format!(
                "device {id} has two different records of revision {}",
                new.revision
            ))
        }
        Some(pin) if pin.revision < new.revision => {
            keystore
                .put(&pin_id, &serde_json::to_vec(&new).map_err(|e| e.to_string())?)
                .await
                .map_err(|e| format!("cannot pin the keys of device {id}: {e}"))?;
            tracing::info!(peer = %id, revision = new.revision, "newer signed record of a peer device pinned");
        }
        Some(_) => {}
    }
    pins.accept(me.device_id().as_str(), id, record_hex, &keys);
    Ok(keys)
}

/// Checks every listed device (see [`check`]); returns their keys, or the first refusal.
pub async fn check_all(
    keystore: &Keystore,
    pins: &Pins,
    me: &DeviceIdentity,
    org: &str,
    trusted: Option<&TrustedKeys>,
    listed: &[Listed<'_>],
) -> Result<Vec<(DeviceId, DevicePublicKeys)>, String> {
    let mut out = Vec::with_capacity(listed.len());
    for peer in listed {
        let keys = check(keystore, pins, me, org, trusted, *peer).await?;
        let id = DeviceId::new(peer.device_id).map_err(|e| format!("device id {:?}: {e}", peer.device_id))?;
        out.push((id, keys));
    }
    Ok(out)
}

/// The Ed25519 signing key `me` pinned for `peer` (what a peer's signed statements, such as
/// a reshare receipt, are checked with); `None` if it never pinned one.
pub async fn pinned_signing_key(keystore: &Keystore, me: &str, peer: &str) -> Option<[u8; 32]> {
    let id = vsigner_keystore::RecordId::peer_keys(me, peer).ok()?;
    let bytes = keystore.get(&id).await.ok()??;
    let pin = Pin::parse(&bytes)?;
    hex::decode(pin.signing).ok()?.try_into().ok()
}

/// Every peer `me` has pinned, with its keys (for the transport to check early envelopes).
pub async fn pinned(keystore: &Keystore, me: &str) -> Vec<(DeviceId, DevicePublicKeys)> {
    let Ok(records) = keystore.list().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for info in records {
        if info.id.kind() != RecordKind::PeerKeys || info.id.device() != me {
            continue;
        }
        let (Some(name), Ok(Some(bytes))) = (info.id.name(), keystore.get(&info.id).await) else {
            continue;
        };
        if let (Ok(id), Some(pin)) = (DeviceId::new(name), Pin::parse(&bytes)) {
            if let Ok(keys) = DevicePublicKeys::from_hex(&pin.signing, &pin.encryption) {
                out.push((id, keys));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vsigner_keystore::Passphrase;
    use vsigner_records::DeviceRecord;

    fn record(identity: &DeviceIdentity, org: &str, revision: u64) -> SignedDeviceRecord {
        let keys = identity.public_keys();
        DeviceRecord {
            organisation_id: org.into(),
            device_id: identity.device_id().as_str().into(),
            signing_key: hex::decode(keys.signing_hex()).unwrap().try_into().unwrap(),
            encryption_key: hex::decode(keys.encryption_hex()).unwrap().try_into().unwrap(),
            revision,
        }
        .sign(identity.signing_key())
    }

    fn listed<'a>(id: &'a str, keys: &'a (String, String), record: &'a str) -> Listed<'a> {
        Listed {
            device_id: id,
            signing_key: &keys.0,
            encryption_key: &keys.1,
            record: Some(record),
        }
    }

    #[tokio::test]
    async fn records_are_verified_then_pinned_and_never_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path().to_str().unwrap(), &Passphrase::new("pinning test"))
            .await
            .unwrap();
        let new = |id: &str| DeviceIdentity::generate(DeviceId::new(id).unwrap(), &mut rand_core::OsRng);
        let (me, peer) = (new("me"), new("peer"));
        let pins = Pins::default();
        let keys = |d: &DeviceIdentity| (d.public_keys().signing_hex(), d.public_keys().encryption_hex());
        let peer_keys = keys(&peer);
        let good = record(&peer, "org", 1).to_hex();
        check(&ks, &pins, &me, "org", None, listed("peer", &peer_keys, &good))
            .await
            .unwrap();
        check(&ks, &pins, &me, "org", None, listed("peer", &peer_keys, &good))
            .await
            .unwrap();
        assert_eq!(pinned(&ks, "me").await.len(), 1);

        // The coordinator swaps the encryption key: beside the record, inside it, or both.
        let impostor = new("peer");
        let swapped = (peer_keys.0.clone(), impostor.public_keys().encryption_hex());
        let e = check(&ks, &pins, &me, "org", None, listed("peer", &swapped, &good))
            .await
            .unwrap_err();
        assert!(e.contains("other than the ones its signed record names"), "{e}");
        let tampered = good.replace(&peer_keys.1, &swapped.1);
        let e = check(&ks, &pins, &me, "org", None, listed("peer", &swapped, &tampered))
            .await
            .unwrap_err();
        assert!(e.contains("the record of device peer does not verify"), "{e}");
        // No record, a record of another organisation, another signing key (even a record
        // the impostor signed itself).
        let mut none = listed("peer", &peer_keys, &good);
        none.record = None;
        assert!(check(&ks, &pins, &me, "org", None, none)
            .await
            .unwrap_err()
            .contains("has not published"));
        let other_org = record(&peer, "other", 1).to_hex();
        assert!(check(
            &ks,
            &pins,
            &me,
            "org",
            None,
            listed("peer", &peer_keys, &other_org)
        )
        .await
        .is_err());
        let impostor_keys = keys(&impostor);
        let own_record = record(&impostor, "org", 5).to_hex();
        let e = check(
            &ks,
            &pins,
            &me,
            "org",
            None,
            listed("peer", &impostor_keys, &own_record),
        )
        .await
        .unwrap_err();
        assert!(e.contains("pinned"), "{e}");

        // A newer revision with a rotated encryption key is taken; an older one refused.
        let rotated_keys = (peer_keys.0.clone(), new("x").public_keys().encryption_hex());
        let rev2 = DeviceRecord {
            organisation_id: "org".into(),
            device_id: "peer".into(),
            signing_key: hex::decode(&rotated_keys.0).unwrap().try_into().unwrap(),
            encryption_key: hex::decode(&rotated_keys.1).unwrap().try_into().unwrap(),
            revision: 2,
        }
        .sign(peer.signing_key())
        .to_hex();
        check(&ks, &pins, &me, "org", None, listed("peer", &rotated_keys, &rev2))
            .await
            .unwrap();
        let e = check(&ks, &pins, &me, "org", None, listed("peer", &peer_keys, &good))
            .await
            .unwrap_err();
        assert!(e.contains("older than the pinned revision 2"), "{e}");

        // A record for this device with keys that are not its own.
        let me_keys = keys(&me);
        let mine = record(&me, "org", 1).to_hex();
        check(&ks, &pins, &me, "org", None, listed("me", &me_keys, &mine))
            .await
            .unwrap();
        let fake_me = new("me");
        let fake = record(&fake_me, "org", 1).to_hex();
        assert!(
            check(&ks, &pins, &me, "org", None, listed("me", &keys(&fake_me), &fake))
                .await
                .is_err()
        );
        // Nor is the record accepted for `me` taken as its own by another identity with the
        // same id (an own record is never served from memory).
        assert!(
            check(&ks, &pins, &fake_me, "org", None, listed("me", &me_keys, &mine))
                .await
                .is_err()
        );

        // With TrustedDeviceKeys, only listed signing keys are taken, pinned or not (a
        // keystore's pins are checked under one setting: a new `Pins`).
        let pins = Pins::default();
        let stranger = new("stranger");
        let stranger_keys = keys(&stranger);
        let stranger_record = record(&stranger, "org", 1).to_hex();
        let trusted: TrustedKeys = [hex::decode(&peer_keys.0).unwrap().try_into().unwrap()].into();
        let e = check(
            &ks,
            &pins,
            &me,
            "org",
            Some(&trusted),
            listed("stranger", &stranger_keys, &stranger_record),
        )
        .await
        .unwrap_err();
        assert!(e.contains("TrustedDeviceKeys"), "{e}");
        check(
            &ks,
            &pins,
            &me,
            "org",
            Some(&trusted),
            listed("peer", &rotated_keys, &rev2),
        )
        .await
        .unwrap();
    }
}
