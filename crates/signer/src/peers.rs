//! Pinning of peer identity keys (trust on first use).
//!
//! A device encrypts protocol messages to, and checks the signatures of, the identity keys
//! the coordinator lists for each committee member. A coordinator that swapped those keys
//! could read every p2p message of a run (secret shares in a reshare). So each device pins,
//! in its keystore, the keys it first saw for each peer device id, and refuses to run with a
//! committee that gives a peer other keys, or that gives the device itself keys that are
//! not its own. The first sight of a peer is still the coordinator's word; operators who
//! want more can check the keys out of band (`GET /version` lists no peer keys; the
//! coordinator's `devices` query does).

use vsigner_keystore::{Keystore, RecordId};
use vsigner_transport::DeviceIdentity;

use crate::coordinator_api::CommitteeMember;

fn pin_of(member: &CommitteeMember) -> String {
    format!(
        "{}:{}",
        member.identity_signing_key, member.identity_encryption_key
    )
}

/// Checks the committee's keys against `own` identity and the pins of its device, pinning
/// peers seen for the first time.
pub async fn check_and_pin(
    keystore: &Keystore,
    own: &DeviceIdentity,
    committee: &[CommitteeMember],
) -> Result<(), String> {
    let me = own.device_id().as_str();
    for member in committee {
        if member.device_id == me {
            let keys = own.public_keys();
            if member.identity_signing_key != keys.signing_hex()
                || member.identity_encryption_key != keys.encryption_hex()
            {
                return Err(format!(
                    "the committee lists keys for this device ({me}) that are not its own"
                ));
            }
            continue;
        }
        let id = RecordId::peer_keys(me, &member.device_id).map_err(|e| e.to_string())?;
        let pin = pin_of(member);
        let pinned = keystore.get(&id).await.map_err(|e| format!("keystore: {e}"))?;
        let pinned = match pinned {
            Some(p) => p,
            None => match keystore.put(&id, pin.as_bytes()).await {
                Ok(()) => {
                    tracing::info!(peer = %member.device_id, "identity keys of a peer device pinned");
                    continue;
                }
                // Pinned meanwhile by a concurrent run: compare with that.
                Err(_) => keystore
                    .get(&id)
                    .await
                    .map_err(|e| format!("keystore: {e}"))?
                    .ok_or_else(|| format!("cannot pin the keys of {}", member.device_id))?,
            },
        };
        if pinned.as_slice() != pin.as_bytes() {
            return Err(format!(
                "the coordinator gives device {} identity keys other than the ones this device pinned when it first saw it",
                member.device_id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vsigner_keystore::Passphrase;
    use vsigner_transport::DeviceId;

    fn member(id: &str, identity: &DeviceIdentity) -> CommitteeMember {
        let k = identity.public_keys();
        serde_json::from_value(serde_json::json!({"deviceId": id, "name": id,
            "identitySigningKey": k.signing_hex(), "identityEncryptionKey": k.encryption_hex(),
            "index": 0, "oldIndex": null, "newIndex": null}))
        .unwrap()
    }

    #[tokio::test]
    async fn keys_are_pinned_on_first_sight_and_never_change() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path().to_str().unwrap(), &Passphrase::new("pinning test"))
            .await
            .unwrap();
        let new = |id: &str| DeviceIdentity::generate(DeviceId::new(id).unwrap(), &mut rand_core::OsRng);
        let (me, peer, impostor) = (new("me"), new("peer"), new("peer"));
        let committee = vec![member("me", &me), member("peer", &peer)];
        check_and_pin(&ks, &me, &committee).await.unwrap();
        check_and_pin(&ks, &me, &committee).await.unwrap();
        // The coordinator swaps the peer's keys: refused, and the pin stays.
        let swapped = vec![member("me", &me), member("peer", &impostor)];
        assert!(check_and_pin(&ks, &me, &swapped)
            .await
            .unwrap_err()
            .contains("pinned"));
        check_and_pin(&ks, &me, &committee).await.unwrap();
        // Keys for this device that are not its own: refused.
        let wrong_self = vec![member("me", &impostor), member("peer", &peer)];
        assert!(check_and_pin(&ks, &me, &wrong_self).await.is_err());
    }
}
