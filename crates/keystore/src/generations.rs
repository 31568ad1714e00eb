//! Share generations of a vault and start-up leftovers: a device keeps one confirmed
//! generation of each vault's share; a new generation is written unconfirmed, never
//! overwritten, and becomes the confirmed one (destroying older ones) only when confirmed,
//! and only if it is a share of the same key; an interrupted write or an unconfirmed
//! generation is found and reported at start.

use crate::record::{RecordId, RecordKind};
use crate::store::list_records_under;
use crate::store::Keystore;
use crate::KeystoreError;

/// Reads the public key of a share record (`None`: unreadable). The keystore does not know
/// share formats; the signer passes its reader.
pub type PublicKeyOf<'a> = &'a (dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync);

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
        self.generations_of(&RecordId::key_share(device, vault, 0)?).await
    }

    /// The generations of the records of `sample`'s kind, device and vault, ascending.
    async fn generations_of(&self, sample: &RecordId) -> Result<Vec<u64>, KeystoreError> {
        let dir = sample
            .path()
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        let mut gens: Vec<u64> = list_records_under(&*self.backend, &dir)
            .await?
            .into_iter()
            .filter(|r| r.id.kind() == sample.kind() && r.id.vault() == sample.vault())
            .filter_map(|r| r.id.generation())
            .collect();
        gens.sort_unstable();
        Ok(gens)
    }

    /// The confirmation of `vault`: the confirmed generation and the public key the device
    /// confirmed it for (empty in confirmations written before the key was recorded).
    async fn confirmation(&self, device: &str, vault: &str) -> Result<Option<(u64, Vec<u8>)>, KeystoreError> {
        let id = RecordId::share_confirmation(device, vault)?;
        match self.get(&id).await? {
            None => Ok(None),
            Some(bytes) => {
                let (generation, key) = bytes.split_at_checked(8).ok_or(KeystoreError::Tampered {
                    path: id.path(),
                    reason: "confirmation is shorter than 8 bytes",
                })?;
                let generation: [u8; 8] = generation.try_into().map_err(|_| KeystoreError::Tampered {
                    path: id.path(),
                    reason: "confirmation is shorter than 8 bytes",
                })?;
                Ok(Some((u64::from_be_bytes(generation), key.to_vec())))
            }
        }
    }

    /// The confirmed generation of `vault`, if any.
    pub async fn confirmed_generation(
        &self,
        device: &str,
        vault: &str,
    ) -> Result<Option<u64>, KeystoreError> {
        Ok(self.confirmation(device, vault).await?.map(|(g, _)| g))
    }

    /// The public key (as the signer's reader gave it) of the vault's confirmed
    /// generation, kept even after the device left the signer set; `None` if nothing is
    /// confirmed or the confirmation predates the record of the key.
    pub async fn confirmed_public_key(
        &self,
        device: &str,
        vault: &str,
    ) -> Result<Option<Vec<u8>>, KeystoreError> {
        Ok(self
            .confirmation(device, vault)
            .await?
            .map(|(_, key)| key)
            .filter(|k| !k.is_empty()))
    }

    async fn write_confirmation(
        &self,
        device: &str,
        vault: &str,
        generation: u64,
        public_key: &[u8],
    ) -> Result<(), KeystoreError> {
        let marker = RecordId::share_confirmation(device, vault)?;
        let mut bytes = generation.to_be_bytes().to_vec();
        bytes.extend_from_slice(public_key);
        self.put(&marker, &bytes).await
    }

    /// Makes `generation` of `vault` the confirmed one, then deletes the older generations
    /// (and the pending-reshare records up to it). Returns the deleted generations.
    ///
    /// Refuses a generation that is not stored (and readable), that is older than the one
    /// already confirmed, or whose share is of another key than the confirmed one:
    /// `public_key_of` reads a share record's public key (`None`: unreadable). A device
    /// never destroys a share of its key for a share of another key, whatever it is told.
    pub async fn confirm_generation(
        &self,
        device: &str,
        vault: &str,
        generation: u64,
        public_key_of: PublicKeyOf<'_>,
    ) -> Result<Vec<u64>, KeystoreError> {
        let id = RecordId::key_share(device, vault, generation)?;
        let Some(new) = self.get(&id).await? else {
            return Err(KeystoreError::Lifecycle(format!(
                "cannot confirm {id}: it is not stored"
            )));
        };
        let new_key = public_key_of(&new).ok_or_else(|| {
            KeystoreError::Lifecycle(format!("cannot confirm {id}: its public key is unreadable"))
        })?;
        if let Some((current, confirmed_key)) = self.confirmation(device, vault).await? {
            if generation < current {
                return Err(KeystoreError::Lifecycle(format!(
                    "cannot confirm generation {generation} of {vault}: generation {current} is already confirmed"
                )));
            }
            let old_key = match self.get(&RecordId::key_share(device, vault, current)?).await? {
                Some(old) => public_key_of(&old),
                None => Some(confirmed_key).filter(|k| !k.is_empty()),
            };
            if old_key.is_some_and(|k| k != new_key) {
                return Err(KeystoreError::Lifecycle(format!(
                    "cannot confirm generation {generation} of {vault}: it is a share of another key than the confirmed generation {current}"
                )));
            }
        }
        self.write_confirmation(device, vault, generation, &new_key)
            .await?;
        let mut deleted = Vec::new();
        for g in self.share_generations(device, vault).await? {
            if g < generation {
                self.backend
                    .delete(&RecordId::key_share(device, vault, g)?.path())
                    .await?;
                deleted.push(g);
            }
        }
        self.forget_pending_reshares(device, vault, generation).await?;
        Ok(deleted)
    }

    /// Records that `device` left the signer set of `vault` at key generation
    /// `generation` (a reshare it dealt in but holds no new share of), with the vault's
    /// `public_key` (kept, so that the device can never be enrolled into another key under
    /// the vault's name), then deletes its older generations: an old share must not outlive
    /// the new sharing. The caller checks that the new sharing is committed. Refuses a
    /// generation that is not newer than every stored one or than the confirmed one.
    /// Returns the deleted generations.
    pub async fn confirm_departure(
        &self,
        device: &str,
        vault: &str,
        generation: u64,
        public_key: &[u8],
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
        self.write_confirmation(device, vault, generation, public_key)
            .await?;
        for g in &stored {
            self.backend
                .delete(&RecordId::key_share(device, vault, *g)?.path())
                .await?;
        }
        self.forget_pending_reshares(device, vault, generation).await?;
        Ok(stored)
    }

    /// Generations of `vault` with a pending-reshare record of `device`, ascending.
    pub async fn pending_reshares(&self, device: &str, vault: &str) -> Result<Vec<u64>, KeystoreError> {
        self.generations_of(&RecordId::pending_reshare(device, vault, 0)?)
            .await
    }

    async fn forget_pending_reshares(
        &self,
        device: &str,
        vault: &str,
        up_to: u64,
    ) -> Result<(), KeystoreError> {
        for g in self.pending_reshares(device, vault).await? {
            if g <= up_to {
                self.backend
                    .delete(&RecordId::pending_reshare(device, vault, g)?.path())
                    .await?;
            }
        }
        Ok(())
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
