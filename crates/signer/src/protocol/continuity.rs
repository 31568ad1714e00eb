//! Key continuity: what a device already holds of a vault decides what it takes part in,
//! whatever the coordinator says. A device never lets an operation replace, shadow or
//! overwrite the key it holds:
//!
//! - a keygen for a vault id it holds anything of (a share, a confirmation, a pending
//!   reshare) is refused: it would put a second key under the vault's name;
//! - a reshare must be of the key its own share holds, deal from a generation no older than
//!   its confirmed one, and give the new shares a generation above every one it holds (a
//!   generation is never written twice);
//! - a signature or presignature must be of the key its own share holds.
//!
//! Checked before voting (the approver is not asked) and again before running.

use vsigner_keystore::Keystore;

use crate::coordinator_api::Operation;

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
    Ok(Holding {
        generations: keystore.share_generations(me, vault).await.map_err(err)?,
        confirmed: keystore.confirmed_generation(me, vault).await.map_err(err)?,
        pending: keystore.pending_reshares(me, vault).await.map_err(err)?,
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
            None => return Ok(None),
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
