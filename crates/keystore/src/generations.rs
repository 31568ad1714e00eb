//! Share generations of a vault and start-up leftovers: a device keeps one confirmed
//! generation of each vault's share, a new generation is written unconfirmed and becomes
//! the confirmed one (destroying older ones) only when confirmed; an interrupted write or
//! an unconfirmed generation is found and reported at start.

use crate::record::{RecordId, RecordKind};
use crate::store::list_records_under;
use crate::store::Keystore;
use crate::KeystoreError;

/// Traces found at start-up that deserve an operator's attention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Temp files of writes interrupted by a crash (harmless; removable).
    pub interrupted_writes: Vec<String>,
    /// Share generations older than the confirmed one, whose deletion was interrupted.
    pub superseded_shares: Vec<RecordId>,
    /// Share generations newer than the confirmed one: a reshare awaiting confirmation.
    pub unconfirmed_shares: Vec<RecordId>,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.interrupted_writes.is_empty()
            && self.superseded_shares.is_empty()
            && self.unconfirmed_shares.is_empty()
    }
}

impl Keystore {
    /// Stored key-share generations of `vault` for `device`, ascending.
    pub async fn share_generations(&self, device: &str, vault: &str) -> Result<Vec<u64>, KeystoreError> {
        let prefix = RecordId::key_share(device, vault, 0)?;
        let dir = prefix
            .path()
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        let mut gens: Vec<u64> = list_records_under(&*self.backend, &dir)
            .await?
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::KeyShare && r.id.vault() == Some(vault))
            .filter_map(|r| r.id.generation())
            .collect();
        gens.sort_unstable();
        Ok(gens)
    }

    /// The generation the coordinator confirmed for `vault`, if any.
    pub async fn confirmed_generation(
        &self,
        device: &str,
        vault: &str,
    ) -> Result<Option<u64>, KeystoreError> {
        let id = RecordId::share_confirmation(device, vault)?;
        match self.get(&id).await? {
            None => Ok(None),
            Some(bytes) => {
                let b: [u8; 8] = bytes.as_slice().try_into().map_err(|_| KeystoreError::Tampered {
                    path: id.path(),
                    reason: "confirmation is not 8 bytes",
                })?;
                Ok(Some(u64::from_be_bytes(b)))
            }
        }
    }

    /// Records that the coordinator confirmed `generation` of `vault` (e.g. after a reshare
    /// completed), then deletes the older generations. Returns the deleted generations.
    /// Refuses to confirm a generation that is not stored (and readable) or is older than
    /// the one already confirmed.
    pub async fn confirm_generation(
        &self,
        device: &str,
        vault: &str,
        generation: u64,
    ) -> Result<Vec<u64>, KeystoreError> {
        let id = RecordId::key_share(device, vault, generation)?;
        if self.get(&id).await?.is_none() {
            return Err(KeystoreError::Lifecycle(format!(
                "cannot confirm {id}: it is not stored"
            )));
        }
        if let Some(current) = self.confirmed_generation(device, vault).await? {
            if generation < current {
                return Err(KeystoreError::Lifecycle(format!(
                    "cannot confirm generation {generation} of {vault}: generation {current} is already confirmed"
                )));
            }
        }
        let marker = RecordId::share_confirmation(device, vault)?;
        self.put(&marker, &generation.to_be_bytes()).await?;
        let mut deleted = Vec::new();
        for g in self.share_generations(device, vault).await? {
            if g < generation {
                self.backend
                    .delete(&RecordId::key_share(device, vault, g)?.path())
                    .await?;
                deleted.push(g);
            }
        }
        Ok(deleted)
    }

    /// Records that `device` left the signer set of `vault` when the coordinator confirmed
    /// key generation `generation` (a reshare it dealt in but holds no new share of), then
    /// deletes its older generations: an old share must not outlive the new sharing.
    /// Refuses a generation that is not newer than every stored one or than the confirmed
    /// one. Returns the deleted generations.
    pub async fn confirm_departure(
        &self,
        device: &str,
        vault: &str,
        generation: u64,
    ) -> Result<Vec<u64>, KeystoreError> {
        let stored = self.share_generations(device, vault).await?;
        if stored.iter().any(|g| *g >= generation) {
            return Err(KeystoreError::Lifecycle(format!(
                "cannot record leaving {vault} at generation {generation}: generation {} is stored",
                stored.last().copied().unwrap_or_default()
            )));
        }
        if let Some(current) = self.confirmed_generation(device, vault).await? {
            if generation < current {
                return Err(KeystoreError::Lifecycle(format!(
                    "cannot record leaving {vault} at generation {generation}: generation {current} is already confirmed"
                )));
            }
        }
        let marker = RecordId::share_confirmation(device, vault)?;
        self.put(&marker, &generation.to_be_bytes()).await?;
        for g in &stored {
            self.backend
                .delete(&RecordId::key_share(device, vault, *g)?.path())
                .await?;
        }
        Ok(stored)
    }

    /// Deletes generation `generation` of `vault` that was stored but never confirmed and
    /// is newer than the confirmed one: the output of a reshare the coordinator did not
    /// complete, found again when the reshare is retried. Refuses a confirmed or older
    /// generation, and a vault with no confirmed generation.
    pub async fn discard_unconfirmed(
        &self,
        device: &str,
        vault: &str,
        generation: u64,
    ) -> Result<(), KeystoreError> {
        match self.confirmed_generation(device, vault).await? {
            Some(c) if generation > c => {
                self.backend
                    .delete(&RecordId::key_share(device, vault, generation)?.path())
                    .await
            }
            _ => Err(KeystoreError::Lifecycle(format!(
                "generation {generation} of {vault} is not an unconfirmed successor and is kept"
            ))),
        }
    }

    /// What an interrupted run left behind (report at start-up).
    pub async fn leftovers(&self) -> Result<Leftovers, KeystoreError> {
        let mut out = Leftovers {
            interrupted_writes: self.backend.leftovers().await?,
            ..Leftovers::default()
        };
        for record in self.list().await? {
            if record.id.kind() != RecordKind::KeyShare {
                continue;
            }
            let (device, vault) = (record.id.device(), record.id.vault().unwrap_or_default());
            let generation = record.id.generation().unwrap_or_default();
            match self.confirmed_generation(device, vault).await? {
                Some(c) if generation < c => out.superseded_shares.push(record.id),
                Some(c) if generation > c => out.unconfirmed_shares.push(record.id),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Removes interrupted writes and superseded share generations. Unconfirmed shares are
    /// kept: they await the coordinator.
    pub async fn clean_leftovers(&self) -> Result<Leftovers, KeystoreError> {
        let found = self.leftovers().await?;
        self.backend.remove_leftovers().await?;
        for id in &found.superseded_shares {
            self.backend.delete(&id.path()).await?;
        }
        Ok(found)
    }
}
