//! ECDSA aux-info (the devices' Paillier keys and ring-Pedersen parameters) for a device
//! set: for a new vault, reused when every member of the ordered set already holds the
//! same, else generated from a prime set of the [`PrimeStock`](crate::prime_stock::PrimeStock)
//! and kept for the next vault of the same set; for a reshare, always generated (a refresh
//! must replace the Paillier keys too). docs/signer.md explains when reuse is sound.
//! Aux-info in which any device's modulus comes from the public test pool is refused unless
//! `AllowPublicTestPrimes` is set. Aux-info belongs to a party: a device that runs several
//! parties of the set (weight above 1) has one per party, each from its own prime set.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::OsRng;
use sha2::{Digest, Sha256};
use vsigner_keystore::RecordId;
use vsigner_tss::ecdsa::{self};
use vsigner_tss::primes::PrimeSet;
use vsigner_tss::ProtocolTag;

use super::{RunContext, RunFailure};
use crate::coordinator_api::{CommitteeMember, Operation};
use crate::metrics::Protocol;

/// The keystore record of a device's aux-info for party `party` of the ordered set
/// `members` (the device of each party), named by a hash of the ordered device ids, and the
/// party when the device runs several.
fn aux_record_id(me: &str, members: &[&CommitteeMember], party: u16) -> Result<RecordId, RunFailure> {
    let mut h = Sha256::new();
    h.update(b"vsigner/aux-info-set/v1");
    for m in members {
        h.update((m.device_id.len() as u32).to_be_bytes());
        h.update(m.device_id.as_bytes());
    }
    let mut name = format!("set-{}", hex::encode(&h.finalize()[..20]));
    if my_parties(me, members).len() > 1 {
        name.push_str(&format!("-p{party}"));
    }
    RecordId::aux_info(me, &name).map_err(|e| RunFailure::new(e.to_string()))
}

/// The parties device `me` runs among `members`, ascending.
fn my_parties(me: &str, members: &[&CommitteeMember]) -> Vec<u16> {
    members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.device_id == me)
        .map(|(p, _)| p as u16)
        .collect()
}

/// Whether a run may reuse the aux-info its device set already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxReuse {
    /// A new vault of a device set that has aux-info: reuse it if every member holds the same.
    SameSet,
    /// A reshare or refresh: generate fresh aux-info.
    Never,
}

impl RunContext {
    /// Refuses aux-info made from the public test primes (any device's modulus), unless
    /// `AllowPublicTestPrimes` is set.
    pub(super) fn check_not_public(&self, aux: &ecdsa::AuxInfo) -> Result<(), RunFailure> {
        match &self.public_test_primes {
            Some(pool) if aux.uses_public_test_primes(pool) => Err(RunFailure::new(
                "the device set's aux-info uses primes from the public test pool (a device of the set took them from test-data/primes): anyone could decrypt its Paillier ciphertexts; refused (AllowPublicTestPrimes = true is for tests and demonstrations only)",
            )),
            _ => Ok(()),
        }
    }

    /// Takes a prime set from the stock, waiting up to `prime_wait` for the background
    /// generator.
    pub(super) async fn take_primes(&self) -> Result<PrimeSet, RunFailure> {
        let deadline = Instant::now() + self.prime_wait;
        let mut warned = false;
        loop {
            if let Some(set) = self
                .primes
                .take()
                .await
                .map_err(|e| RunFailure::new(format!("prime stock: {e}")))?
            {
                return Ok(set);
            }
            if Instant::now() >= deadline {
                return Err(RunFailure::new(
                    "no safe-prime set is ready for aux-info (raise PrimePoolTarget, or import primes with `vsigner primes import`)",
                ));
            }
            if !warned {
                tracing::warn!(
                    "waiting for a safe-prime set for aux-info; the background generator is working"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Returns prime sets that were never used in a message to the stock.
    pub(super) async fn put_back(&self, primes: impl IntoIterator<Item = PrimeSet>) {
        for p in primes {
            if let Err(e) = self.primes.put(&p).await {
                tracing::warn!(error = %e, "could not return an unused prime set");
            }
        }
    }

    /// Asks the set `members` (the device of each party, in party order) whether every
    /// party holds the same aux-info for exactly this ordered set; returns this device's
    /// parties' aux-info (ascending party order) if so.
    pub(super) async fn agree_on_aux_info(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
    ) -> Result<Option<Vec<ecdsa::AuxInfo>>, RunFailure> {
        let mut mine = BTreeMap::new();
        for p in my_parties(self.me(), members) {
            let id = aux_record_id(self.me(), members, p)?;
            match self.keystore.get(&id).await {
                Ok(Some(bytes)) => match ecdsa::AuxInfo::from_bytes(&bytes) {
                    Ok(aux) => {
                        mine.insert(p, aux);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stored aux-info is unreadable; it will be generated again");
                    }
                },
                Ok(None) => {}
                Err(e) => return Err(RunFailure::new(format!("keystore: {e}"))),
            }
        }
        let n = members.len() as u16;
        let votes = self
            .session(
                ProtocolTag::EcdsaAuxInfoReuse,
                op,
                members,
                None,
                |party, eid, i| {
                    let mine = mine.get(&i);
                    async move { ecdsa::agree_on_reuse(party, eid, i, n, mine).await }
                },
            )
            .await?;
        let reuse = votes.iter().all(|r| *r) && mine.len() == votes.len();
        tracing::info!(reuse, parties = n, "aux-info of the device set");
        Ok(if reuse {
            Some(mine.into_values().collect())
        } else {
            None
        })
    }

    /// Generates aux-info for the set `members` with `primes` (one set for each of this
    /// device's parties, in party order), and keeps it for the next vault of the same
    /// ordered set.
    pub(super) async fn fresh_aux_info(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
        primes: Vec<PrimeSet>,
    ) -> Result<Vec<ecdsa::AuxInfo>, RunFailure> {
        let n = members.len() as u16;
        let options = self.aux_options;
        let parties = my_parties(self.me(), members);
        let primes: Mutex<BTreeMap<u16, PrimeSet>> =
            Mutex::new(parties.iter().copied().zip(primes).collect());
        let auxes = self
            .session(
                ProtocolTag::EcdsaAuxInfo,
                op,
                members,
                Some(Protocol::EcdsaAuxInfo),
                |party, eid, i| {
                    let primes = primes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&i);
                    async move {
                        let primes = primes.ok_or(vsigner_tss::Error::InvalidArguments(
                            "no prime set for this party".into(),
                        ))?;
                        ecdsa::generate_aux_info(party, eid, i, n, primes, options, &mut OsRng).await
                    }
                },
            )
            .await?;
        for (p, aux) in parties.iter().zip(&auxes) {
            self.check_not_public(aux)?;
            // The set's cache is replaced (share records hold their own copy): a crash
            // between the two steps loses only the cache.
            let id = aux_record_id(self.me(), members, *p)?;
            let bytes = aux
                .to_bytes()
                .map_err(|e| RunFailure::new(format!("aux-info: {e}")))?;
            let stored = async {
                if self.keystore.get(&id).await?.is_some() {
                    self.keystore.delete(&id).await?;
                }
                self.keystore.put(&id, &bytes).await
            };
            if let Err(e) = stored.await {
                tracing::warn!(error = %e, "could not keep the aux-info for reuse");
            }
        }
        Ok(auxes)
    }

    /// The aux-info of the set `members` for new shares (one per party of this device in
    /// it, in party order): agreed reuse, else generated with primes taken before `protocol`
    /// runs (a device without primes must not start it). The primes go back to the stock
    /// when `protocol` fails or yields nothing.
    pub(super) async fn with_aux_info<T, F, Fut>(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
        reuse: AuxReuse,
        protocol: F,
    ) -> Result<Option<(T, Vec<ecdsa::AuxInfo>)>, RunFailure>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, RunFailure>>,
    {
        let reused = match reuse {
            AuxReuse::SameSet => self.agree_on_aux_info(op, members).await?,
            AuxReuse::Never => None,
        };
        let primes = match reused {
            Some(_) => None,
            None => {
                let mut sets = Vec::new();
                for _ in my_parties(self.me(), members) {
                    match self.take_primes().await {
                        Ok(set) => sets.push(set),
                        Err(e) => {
                            self.put_back(sets).await;
                            return Err(e);
                        }
                    }
                }
                Some(sets)
            }
        };
        let produced = match protocol().await {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.put_back(primes.into_iter().flatten()).await;
                return Ok(None);
            }
            Err(e) => {
                // The primes were never used in a message: they go back.
                self.put_back(primes.into_iter().flatten()).await;
                return Err(e);
            }
        };
        let auxes = match (reused, primes) {
            (Some(auxes), _) => auxes,
            (None, Some(primes)) => self.fresh_aux_info(op, members, primes).await?,
            (None, None) => return Err(RunFailure::new("no prime set for aux-info")),
        };
        for aux in &auxes {
            self.check_not_public(aux)?;
        }
        Ok(Some((produced, auxes)))
    }
}
