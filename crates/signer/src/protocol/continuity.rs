//! Key continuity: what a device already holds of a vault decides what it takes part in,
//! whatever the coordinator says. A device never lets an operation replace, shadow or
//! overwrite the key it holds:
//!
//! - a keygen for a vault id it holds anything of (a share, a confirmation, a pending
//!   reshare) is refused: it would put a second key under the vault's name; a keygen writes
//!   generation 0;
//! - a reshare must be of the key its own share holds (or, for a device that left the set,
//!   the key it confirmed), deal from a generation no older than its confirmed one, and
//!   give the new shares a generation above every one it holds (a generation is never
//!   written twice) but at most [`MAX_GENERATION_STEP`] above (a coordinator cannot exhaust
//!   the numbers and freeze the vault);
//! - a signature or presignature must be of the key its own share holds.
//!
//! Checked before voting (the approver is not asked) and again before running.

use vsigner_keystore::Keystore;

use crate::coordinator_api::Operation;

/// How far above the generations a device holds a reshare's new generation may be (the
/// coordinator skips a number for each failed attempt).
pub const MAX_GENERATION_STEP: u64 = 1_000_000;

/// What a device holds of one vault.
struct Holding {
    /// Stored share generations, ascending.
    generations: Vec<u64>,
    /// The confirmed generation (also set when the device left the signer set).
    confirmed: Option<u64>,
    /// Generations of reshares it took part in that are not committed yet.
    pending: Vec<u64>,
}

impl Holding {
    fn is_empty(&self) -> bool {
        self.generations.is_empty() && self.confirmed.is_none() && self.pending.is_empty()
    }

    /// The highest generation it holds or has seen.
    fn top(&self) -> Option<u64> {
        self.generations
            .iter()
            .chain(&self.pending)
            .chain(&self.confirmed)
            .copied()
            .max()
    }
}

async fn holding(keystore: &Keystore, me: &str, vault: &str) -> Result<Holding, String> {
    let err = |e: vsigner_keystore::KeystoreError| format!("keystore: {e}");
    // The shares before the confirmation: a departure writes its confirmation, then
    // deletes the shares, so this order always sees one of them (reading both at once
    // could see neither). The pending reshares are listed meanwhile.
    let (generations, pending) = tokio::try_join!(
        keystore.share_generations(me, vault),
        keystore.pending_reshares(me, vault),
    )
    .map_err(err)?;
    let confirmed = keystore.confirmed_generation(me, vault).await.map_err(err)?;
    Ok(Holding {
        generations,
        confirmed,
        pending,
    })
}

/// The public key (hex) of the vault as this device's own share says: the confirmed
/// generation's share, else the newest stored one; `None` if it holds no share.
async fn own_public_key(
    keystore: &Keystore,
    me: &str,
    vault: &str,
    curve: &str,
    held: &Holding,
) -> Result<Option<String>, String> {
    let generation = match held.confirmed.filter(|c| held.generations.contains(c)) {
        Some(c) => c,
        None => match held.generations.last() {
            Some(g) => *g,
            // No share (it left the signer set): the key it confirmed, if recorded.
            None => {
                let key = keystore
                    .confirmed_public_key(me, vault)
                    .await
                    .map_err(|e| format!("keystore: {e}"))?;
                return Ok(key.and_then(|k| String::from_utf8(k).ok()));
            }
        },
    };
    let id = vsigner_keystore::RecordId::key_share(me, vault, generation).map_err(|e| e.to_string())?;
    let Some(bytes) = keystore.get(&id).await.map_err(|e| format!("keystore: {e}"))? else {
        return Ok(None);
    };
    let (public_key, _) = super::share_summary(curve, &bytes).map_err(|e| e.reason)?;
    Ok(Some(public_key))
}

/// Checks `op` against what device `me` holds of its vault; `Err` says why it is refused.
pub async fn check(keystore: &Keystore, me: &str, op: &Operation) -> Result<(), String> {
    let vault = &op.vault_id;
    let held = holding(keystore, me, vault).await?;
    let refused = |why: String| Err(format!("device {me} refuses {} {}: {why}", op.kind, op.id));
    if op.kind == "Keygen" {
        if !held.is_empty() {
            return refused(format!(
                "it already holds key material of vault {vault} (share generations {:?}, confirmed {:?}); a keygen would put another key under the vault's name",
                held.generations, held.confirmed
            ));
        }
        if op.vault.key_generation != 0 {
            return refused(format!(
                "a keygen writes generation 0, not {}",
                op.vault.key_generation
            ));
        }
        return Ok(());
    }
    let own_key = own_public_key(keystore, me, vault, &op.curve, &held).await?;
    if let Some(own) = &own_key {
        let said = op.vault.public_key.as_deref().unwrap_or("none");
        if said != own {
            return refused(format!(
                "the coordinator says vault {vault} has key {said}; this device's share is of key {own}"
            ));
        }
    }
    if let (Some(r), "Reshare") = (&op.reshare, op.kind.as_str()) {
        let new = r.new_generation();
        if new <= r.old_key_generation {
            return refused(format!(
                "new key generation {new} is not above the generation {} it replaces",
                r.old_key_generation
            ));
        }
        if let Some(top) = held.top() {
            if new <= top {
                return refused(format!(
                    "new key generation {new} is not above generation {top}, which this device already holds of vault {vault} (a generation is never written twice)"
                ));
            }
        }
        let base = held.top().unwrap_or(0).max(r.old_key_generation);
        if new > base.saturating_add(MAX_GENERATION_STEP) {
            return refused(format!(
                "new key generation {new} is more than {MAX_GENERATION_STEP} above generation {base}"
            ));
        }
        let deals = op
            .committee
            .iter()
            .any(|m| m.device_id == me && m.old_index.is_some());
        if let (true, Some(c)) = (deals, held.confirmed) {
            if r.old_key_generation < c {
                return refused(format!(
                    "it would deal from generation {}, older than its confirmed generation {c}",
                    r.old_key_generation
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vsigner_keystore::{Passphrase, RecordId};

    fn share(n: u16) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../test-data/key-shares/ed25519-2of3/party-{n}.vsgn")),
        )
        .unwrap()
    }

    /// An operation of `kind` on vault `v` as the coordinator describes it.
    fn op(kind: &str, public_key: Option<&str>, generation: u64, reshare: Option<(u64, u64)>) -> Operation {
        serde_json::from_value(serde_json::json!({
            "id": "op", "organisationId": "o", "kind": kind, "state": "Ready", "vaultId": "v", "curve": "ed25519",
            "nonce": "ab".repeat(32), "createdAt": "", "updatedAt": "", "expiresAt": "",
            "vault": {"id": "v", "organisationId": "o", "name": "n", "curve": "ed25519", "threshold": 2, "signers": [],
                      "publicKey": public_key, "chainCode": null, "keyGeneration": generation, "keySetHash": null, "status": "Active", "ethereumAddress": null},
            "committee": [{"deviceId": "me", "name": "me", "identitySigningKey": "", "identityEncryptionKey": "", "record": null,
                           "index": null, "oldIndex": 0, "newIndex": 0}],
            "submittedDeviceIds": [], "keygen": null,
            "reshare": reshare.map(|(old, new)| serde_json::json!({"oldThreshold": 2, "oldSigners": [], "newThreshold": 2,
                "newSigners": [], "oldKeyGeneration": old, "newKeyGeneration": new})),
            "sign": null, "result": null, "failure": null, "rejectionReason": null, "startedBy": null
        }))
        .unwrap()
    }

    #[test]
    fn a_share_summary_is_remembered_only_for_the_same_record_and_curve() {
        let record = share(2);
        let parsed = crate::protocol::share_summary("ed25519", &record).unwrap();
        assert_eq!(
            crate::protocol::share_summary("ed25519", &record).unwrap(),
            parsed
        );
        // Another party's share of the same key: the same summary.
        assert_eq!(
            crate::protocol::share_summary("ed25519", &share(1)).unwrap(),
            parsed
        );
        // Another curve: parsed (and refused), never the remembered summary.
        for (curve, bytes) in [
            ("bip340", &record),
            ("secp256k1", &record),
            ("secp256r1", &record),
        ] {
            let summary = crate::protocol::share_summary(curve, bytes);
            assert!(
                !summary.as_ref().is_ok_and(|s| *s == parsed),
                "{curve}: {summary:?}"
            );
        }
    }

    #[tokio::test]
    async fn what_a_device_holds_decides() {
        let ks = Keystore::open("memory://", &Passphrase::new("continuity test"))
            .await
            .unwrap();
        let record = share(0);
        let (key, _) = crate::protocol::share_summary("ed25519", &record).unwrap();
        // Nothing held: a keygen at generation 0 runs, at another generation it does not.
        check(&ks, "me", &op("Keygen", None, 0, None)).await.unwrap();
        assert!(check(&ks, "me", &op("Keygen", None, 1, None)).await.is_err());
        ks.put(&RecordId::key_share("me", "v", 0).unwrap(), &record)
            .await
            .unwrap();
        let key_of = |b: &[u8]| {
            crate::protocol::share_summary("ed25519", b)
                .ok()
                .map(|(k, _)| k.into_bytes())
        };
        ks.confirm_generation("me", "v", 0, &key_of).await.unwrap();
        // Held: no keygen; a reshare of its own key, to a new generation, runs.
        let refused = check(&ks, "me", &op("Keygen", None, 0, None)).await.unwrap_err();
        assert!(refused.contains("already holds key material"), "{refused}");
        check(&ks, "me", &op("Reshare", Some(&key), 0, Some((0, 1))))
            .await
            .unwrap();
        // Another key, a generation not above what it holds, or one far above: refused.
        let other = "11".repeat(32);
        assert!(check(&ks, "me", &op("Reshare", Some(&other), 0, Some((0, 1))))
            .await
            .is_err());
        assert!(check(&ks, "me", &op("Sign", Some(&other), 0, None))
            .await
            .is_err());
        assert!(check(&ks, "me", &op("Reshare", Some(&key), 0, Some((0, 0))))
            .await
            .is_err());
        assert!(
            check(&ks, "me", &op("Reshare", Some(&key), 0, Some((0, u64::MAX))))
                .await
                .is_err()
        );
        // After leaving the set, the device still knows the vault's key.
        ks.confirm_departure("me", "v", 1, key.as_bytes()).await.unwrap();
        assert!(check(&ks, "me", &op("Reshare", Some(&other), 1, Some((1, 2))))
            .await
            .is_err());
        check(&ks, "me", &op("Reshare", Some(&key), 1, Some((1, 2))))
            .await
            .unwrap();
    }
}
