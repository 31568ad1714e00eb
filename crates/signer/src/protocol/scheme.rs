//! What a signature scheme does for a device, behind one trait, and the table from a vault's
//! curve to the scheme that serves it.
//!
//! The stages ([`keygen`](super::keygen), [`sign`](super::sign), [`reshare`](super::reshare))
//! check the committee, load and store shares, and build what is submitted, once for every
//! scheme; a [`Scheme`] runs its protocols on the transport and encodes its share records.
//! A new curve or scheme is one implementation of [`Scheme`] and one line in
//! [`with_scheme!`].

use sha2::{Digest, Sha256};
use vsigner_approval::Curve;
use vsigner_tss::reshare::{Acknowledged, DealerShare, KeyInfo, ReshareSetup, Role};
use zeroize::Zeroizing;

use super::sign::Signing;
use super::{Committee, RunContext, RunFailure};
use crate::coordinator_api::{CommitteeMember, Operation};

/// A share a run produced, encoded as its scheme stores it, and what the coordinator is
/// told about it.
pub struct NewShare {
    /// The keystore record (secret).
    pub record: Zeroizing<Vec<u8>>,
    /// The vault's public key, as the coordinator writes it.
    pub public_key: Vec<u8>,
    /// The BIP-32 chain code, for schemes that derive child keys.
    pub chain_code: Option<Vec<u8>>,
    /// [`key_set_hash`] of the key set the share belongs to.
    pub key_set_hash: String,
}

impl std::fmt::Debug for NewShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewShare")
            .field("record", &"<redacted>")
            .field("public_key", &hex::encode(&self.public_key))
            .field("key_set_hash", &self.key_set_hash)
            .finish_non_exhaustive()
    }
}

/// How a reshare ended for one party.
#[derive(Debug)]
pub struct Reshared {
    /// Its new share, if it receives one.
    pub share: Option<NewShare>,
    /// [`key_set_hash`] of the new sharing (known to every participant: it names what the
    /// new holders' receipts must state).
    pub key_set_hash: String,
    /// Whether every acknowledgement arrived (it does not decide anything: the receipts do).
    pub acknowledged: Acknowledged,
}

/// A signature as the coordinator takes it.
pub struct Signature {
    /// `r‖s` (ECDSA) or the 64-byte Schnorr signature.
    pub bytes: Vec<u8>,
    /// The ECDSA recovery id.
    pub recovery_id: Option<u8>,
}

/// The parameters of a reshare that every scheme gets, already checked against the
/// approved signer sets.
pub struct ReshareParams<'a> {
    /// Each party's role, in party order.
    pub roles: &'a [Role],
    /// Number of old shares.
    pub old_n: u16,
    /// Threshold of the old shares.
    pub old_threshold: u16,
    /// Threshold of the new shares.
    pub new_threshold: u16,
    /// The vault key (it does not change), as the coordinator wrote it.
    pub public_key: &'a [u8],
    /// The parties that receive a share, in new-index order (for schemes that set up the
    /// new set, such as ECDSA's aux-info).
    pub new_set: &'a [&'a CommitteeMember],
}

/// This device's parties of a reshare by party index: each one's setup and the old share
/// it deals with, if any.
pub type ResharingParties<'a, E, S> = std::collections::BTreeMap<u16, (ReshareSetup<'a, E>, Option<S>)>;

impl<'a> ReshareParams<'a> {
    /// Each of this device's parties (`committee.mine`, with `old` its old share records):
    /// its setup and the old share it deals with, decoded by `read`.
    pub fn parties<E: generic_ec::Curve, S>(
        &self,
        committee: &Committee,
        public_key: generic_ec::Point<E>,
        old: &[Option<&[u8]>],
        read: impl Fn(&[u8]) -> Result<S, RunFailure>,
    ) -> Result<ResharingParties<'a, E, S>, RunFailure> {
        let mut parties = std::collections::BTreeMap::new();
        for (p, record) in committee.mine.iter().zip(old) {
            let setup = ReshareSetup {
                roles: self.roles,
                me: *p,
                old_n: self.old_n,
                old_threshold: self.old_threshold,
                new_threshold: self.new_threshold,
                public_key,
            };
            parties.insert(*p, (setup, record.map(&read).transpose()?));
        }
        Ok(parties)
    }
}

/// One share as a disaster-recovery file carries it (see `vsigner_recovery`): secret.
pub struct ExportedShare {
    /// The share's evaluation point (tss-lib's `ShareID`), big-endian.
    pub evaluation_point: [u8; 32],
    /// The share `x_i` (tss-lib's `Xi`), big-endian.
    pub secret: Zeroizing<[u8; 32]>,
    /// The vault's public key, compressed (SEC1; RFC 8032 for ed25519).
    pub public_key: Vec<u8>,
    /// Shares a signature needs.
    pub threshold: u16,
}

impl std::fmt::Debug for ExportedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedShare")
            .field("evaluation_point", &hex::encode(self.evaluation_point))
            .field("secret", &"<redacted>")
            .field("public_key", &hex::encode(&self.public_key))
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl ExportedShare {
    /// A holder's share as its scheme's resharing reads it.
    pub fn of<E: generic_ec::Curve>(share: &DealerShare<E>) -> Result<Self, RunFailure> {
        let point = share
            .key_info
            .preimages
            .get(usize::from(share.index))
            .ok_or_else(|| RunFailure::new("the stored share has no evaluation point"))?;
        let be32 = |bytes: &[u8]| -> Result<[u8; 32], RunFailure> {
            let mut out = [0u8; 32];
            let start = out
                .len()
                .checked_sub(bytes.len())
                .ok_or_else(|| RunFailure::new("a scalar longer than 32 bytes"))?;
            out[start..].copy_from_slice(bytes);
            Ok(out)
        };
        let mut encoded = share.secret.as_ref().to_be_bytes();
        let secret = be32(encoded.as_bytes()).map(Zeroizing::new);
        zeroize::Zeroize::zeroize(encoded.as_mut());
        Ok(Self {
            evaluation_point: be32(point.to_be_bytes().as_bytes())?,
            secret: secret?,
            public_key: share.key_info.public_key.to_bytes(true).as_bytes().to_vec(),
            threshold: share.key_info.threshold,
        })
    }
}

/// One signature scheme: its protocols, run for this device's parties over the transport,
/// and its share records. Every method is given the operation (for execution ids) and the
/// checked committee; what is per party comes and goes in `committee.mine` order.
#[allow(async_fn_in_trait)] // used by static dispatch only (`with_scheme!`)
pub trait Scheme {
    /// Whether [`Scheme::sign`] waits for the run mark itself ([`RunContext::run_mark`]),
    /// before its first message that depends on a share; otherwise the run waits for the mark
    /// before the signing protocol starts.
    const SIGN_WAITS_FOR_RUN_MARK: bool = false;

    /// The public key and key-set hash of a stored share record.
    fn summary(record: &[u8]) -> Result<(Vec<u8>, String), RunFailure>;

    /// The share of a stored share record, for a disaster-recovery file.
    fn export(record: &[u8]) -> Result<ExportedShare, RunFailure>;

    /// Generates a `threshold`-of-n key with `committee` (party `p` is share `p`): a new
    /// share for each of this device's parties.
    async fn keygen(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        threshold: u16,
    ) -> Result<Vec<NewShare>, RunFailure>;

    /// Signs `what` with the committee's shares; `signers` are the parties' share indices
    /// in party order, `records` this device's parties' share records.
    async fn sign(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        signers: &[u16],
        records: &[&[u8]],
        what: &Signing<'_>,
    ) -> Result<Signature, RunFailure>;

    /// Reshares the key to the new set: `old` holds, for each of this device's parties, the
    /// share record it deals with, if any; each party's new share, if it receives one.
    async fn reshare(
        run: &RunContext,
        op: &Operation,
        committee: &Committee,
        params: &ReshareParams<'_>,
        old: &[Option<&[u8]>],
    ) -> Result<Vec<Reshared>, RunFailure>;
}

/// Runs `$body` with `$s` standing for the [`Scheme`] of `$curve`: the table of schemes.
macro_rules! with_scheme {
    ($curve:expr, $s:ident => $body:expr) => {
        match $curve {
            vsigner_approval::Curve::Secp256k1 => {
                type $s = $crate::protocol::ecdsa::Ecdsa<vsigner_tss::ecdsa::Secp256k1>;
                $body
            }
            vsigner_approval::Curve::Secp256r1 => {
                type $s = $crate::protocol::ecdsa::Ecdsa<vsigner_tss::ecdsa::Secp256r1>;
                $body
            }
            vsigner_approval::Curve::Ed25519 => {
                type $s = $crate::protocol::schnorr::Frost<vsigner_tss::schnorr::Ed25519>;
                $body
            }
            vsigner_approval::Curve::Bip340 => {
                type $s = $crate::protocol::schnorr::Frost<vsigner_tss::schnorr::Bip340>;
                $body
            }
        }
    };
}
pub(crate) use with_scheme;

/// SHA-256 over the public key shares in index order, compressed (the coordinator's
/// `keySetHash`).
pub fn key_set_hash<E: generic_ec::Curve>(info: &KeyInfo<E>) -> String {
    let mut h = Sha256::new();
    for p in &info.public_shares {
        h.update(p.to_bytes(true));
    }
    hex::encode(h.finalize())
}

/// Share summaries already worked out, by the SHA-256 digest of the curve's name and the
/// record. Working one out parses every share of the record, and parsing validates each point
/// in it (for ed25519 a torsion check per point: 6 % of a busy signer's CPU when every vote's
/// continuity check parsed the same share again). A summary is a function of those bytes, so
/// a remembered one is the one parsing gives; failures are not remembered. The digest of a
/// share (which has full entropy) reveals nothing of it, and stays in this process's memory;
/// it does let whoever reads that memory confirm a guessed share, and SHA-256's buffer is not
/// wiped (as the share's other transient copies while it is parsed are not).
static SUMMARIES: std::sync::LazyLock<std::sync::Mutex<Summaries>> =
    std::sync::LazyLock::new(Default::default);
/// Public key (hex) and key-set hash by record digest.
type Summaries = std::collections::HashMap<[u8; 32], (String, String)>;
/// At most this many summaries are remembered (then all are forgotten at once).
const SUMMARIES_MAX: usize = 4096;

/// The public key (hex) and key-set hash of a stored share record of a vault on `curve`
/// (the coordinator's name); every share of a device's record must agree on them.
pub fn share_summary(curve: &str, bytes: &[u8]) -> Result<(String, String), RunFailure> {
    let curve =
        Curve::from_name(curve).ok_or_else(|| RunFailure::new(format!("unsupported curve {curve:?}")))?;
    let digest = summary_key(curve, bytes);
    let summaries = || SUMMARIES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = summaries().get(&digest) {
        return Ok(known.clone());
    }
    let summary = parsed_share_summary(curve, bytes)?;
    let mut known = summaries();
    if known.len() >= SUMMARIES_MAX {
        known.clear();
    }
    known.insert(digest, summary.clone());
    Ok(summary)
}

/// What a summary is remembered by: SHA-256 of the scheme's own name (a known one, no zero
/// byte in it), a zero byte, and the record.
fn summary_key(curve: Curve, bytes: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(curve.as_str().as_bytes())
        .chain_update([0])
        .chain_update(bytes)
        .finalize()
        .into()
}

/// [`share_summary`], parsing the record.
fn parsed_share_summary(curve: Curve, bytes: &[u8]) -> Result<(String, String), RunFailure> {
    let mut summary: Option<(Vec<u8>, String)> = None;
    for part in super::share_set::decode(bytes)? {
        let this = with_scheme!(curve, S => S::summary(part))?;
        match &summary {
            Some(first) if *first != this => {
                return Err(RunFailure::new(
                    "the stored shares of this device are of different keys",
                ))
            }
            Some(_) => {}
            None => summary = Some(this),
        }
    }
    let (public_key, key_set_hash) = summary.ok_or_else(|| RunFailure::new("no stored share"))?;
    Ok((hex::encode(public_key), key_set_hash))
}

/// The shares of a stored share record of a vault on `curve` (the coordinator's name), in
/// share-index order (several for a weighted device), for a disaster-recovery file.
pub fn share_exports(curve: &str, bytes: &[u8]) -> Result<Vec<ExportedShare>, RunFailure> {
    let curve =
        Curve::from_name(curve).ok_or_else(|| RunFailure::new(format!("unsupported curve {curve:?}")))?;
    super::share_set::decode(bytes)?
        .into_iter()
        .map(|part| with_scheme!(curve, S => S::export(part)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_remembered_by_the_scheme_and_every_byte_of_the_record() {
        let record = b"a share record".to_vec();
        let key = summary_key(Curve::Ed25519, &record);
        for i in 0..record.len() {
            let mut other = record.clone();
            other[i] ^= 1;
            assert_ne!(summary_key(Curve::Ed25519, &other), key, "byte {i} changed");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert_ne!(summary_key(Curve::Ed25519, &longer), key);
        for curve in [Curve::Bip340, Curve::Secp256k1, Curve::Secp256r1] {
            assert_ne!(summary_key(curve, &record), key, "{curve:?}");
        }
    }
}
