//! Records: what is stored, under which name, bound to which associated data.
//!
//! Paths: `devices/{device}/identity.vsrec`, `devices/{device}/key-share/{vault}/g{gen}.vsrec`,
//! `devices/{device}/share-confirmation/{vault}.vsrec`, `devices/{device}/aux-info/{name}.vsrec`,
//! `devices/{device}/prime-set/{name}.vsrec`, `devices/{device}/presignature/{vault}/{name}.vsrec`
//! (no longer written: presignatures live in process memory; old ones are deleted at start),
//! `devices/{device}/reshare-pending/{vault}/g{gen}.vsrec`,
//! `devices/{device}/operation-run/{operation}.vsrec`.

use crate::KeystoreError;

/// Extension of record files.
pub const RECORD_SUFFIX: &str = ".vsrec";

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordKind {
    /// A device's identity secrets (signing and key-agreement keys).
    DeviceIdentity,
    /// A key share of a vault, at one key generation.
    KeyShare,
    /// Which key-share generation of a vault the coordinator confirmed.
    ShareConfirmation,
    /// ECDSA aux-info of a device set.
    AuxInfo,
    /// A prime set for a future aux-info run.
    PrimeSet,
    /// An unused ECDSA presignature (written by earlier versions only; see
    /// docs/keystore.md: a presignature must not survive its process).
    Presignature,
    /// The identity public keys of a peer device, pinned when first seen.
    PeerKeys,
    /// What a device must know to commit a reshare it took part in (the new holders, the
    /// key-set hash their receipts must state): kept until a generation at least as new
    /// is committed.
    PendingReshare,
    /// The mark that a device started an operation's protocol: it never runs the same
    /// operation twice.
    OperationRun,
}

impl RecordKind {
    /// The name used in paths and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::DeviceIdentity => "identity",
            RecordKind::KeyShare => "key-share",
            RecordKind::ShareConfirmation => "share-confirmation",
            RecordKind::AuxInfo => "aux-info",
            RecordKind::PrimeSet => "prime-set",
            RecordKind::Presignature => "presignature",
            RecordKind::PeerKeys => "peer-keys",
            RecordKind::PendingReshare => "reshare-pending",
            RecordKind::OperationRun => "operation-run",
        }
    }

    fn from_str(s: &str) -> Option<Self> {
        Some(match s {
            "identity" => RecordKind::DeviceIdentity,
            "key-share" => RecordKind::KeyShare,
            "share-confirmation" => RecordKind::ShareConfirmation,
            "aux-info" => RecordKind::AuxInfo,
            "prime-set" => RecordKind::PrimeSet,
            "presignature" => RecordKind::Presignature,
            "peer-keys" => RecordKind::PeerKeys,
            "reshare-pending" => RecordKind::PendingReshare,
            "operation-run" => RecordKind::OperationRun,
            _ => return None,
        })
    }

    /// Whether records of this kind may be replaced (the confirmation marker; a peer's
    /// pinned keys, by a newer revision of its signed record).
    pub(crate) fn overwritable(self) -> bool {
        matches!(self, RecordKind::ShareConfirmation | RecordKind::PeerKeys)
    }
}

/// The identity of a record. Build one with the constructors, which check the names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    kind: RecordKind,
    device: String,
    vault: Option<String>,
    generation: Option<u64>,
    name: Option<String>,
}

/// A stored record as listed, without decrypting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// Its identity.
    pub id: RecordId,
    /// Its size in bytes as stored (ciphertext and header).
    pub size: u64,
}

fn check_name(what: &'static str, s: &str) -> Result<String, KeystoreError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(KeystoreError::invalid(
            what,
            format!("{s:?} must be 1-128 characters of A-Z a-z 0-9 . _ - and not start with '.'"),
        ))
    }
}

impl RecordId {
    fn new(
        kind: RecordKind,
        device: &str,
        vault: Option<&str>,
        generation: Option<u64>,
        name: Option<&str>,
    ) -> Result<Self, KeystoreError> {
        Ok(RecordId {
            kind,
            device: check_name("device id", device)?,
            vault: vault.map(|v| check_name("vault id", v)).transpose()?,
            generation,
            name: name.map(|n| check_name("record name", n)).transpose()?,
        })
    }

    /// A device's identity.
    pub fn identity(device: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::DeviceIdentity, device, None, None, None)
    }

    /// A device's key share of `vault` at key generation `generation`.
    pub fn key_share(device: &str, vault: &str, generation: u64) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::KeyShare, device, Some(vault), Some(generation), None)
    }

    pub(crate) fn share_confirmation(device: &str, vault: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::ShareConfirmation, device, Some(vault), None, None)
    }

    /// A device's aux-info for the device set named `set` (e.g. a hash of the ordered set).
    pub fn aux_info(device: &str, set: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::AuxInfo, device, None, None, Some(set))
    }

    /// A prime set named `name`.
    pub fn prime_set(device: &str, name: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::PrimeSet, device, None, None, Some(name))
    }

    /// A presignature named `name` for `vault`.
    pub fn presignature(device: &str, vault: &str, name: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::Presignature, device, Some(vault), None, Some(name))
    }

    /// What `device` keeps about its part in a reshare of `vault` to key generation
    /// `generation`, until that reshare is committed.
    pub fn pending_reshare(device: &str, vault: &str, generation: u64) -> Result<Self, KeystoreError> {
        Self::new(
            RecordKind::PendingReshare,
            device,
            Some(vault),
            Some(generation),
            None,
        )
    }

    /// The mark that `device` started the protocol of `operation`.
    pub fn operation_run(device: &str, operation: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::OperationRun, device, None, None, Some(operation))
    }

    /// The identity public keys of device `peer` as pinned by `device`.
    pub fn peer_keys(device: &str, peer: &str) -> Result<Self, KeystoreError> {
        Self::new(RecordKind::PeerKeys, device, None, None, Some(peer))
    }

    /// The kind.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The vault, for shares, confirmations and presignatures.
    pub fn vault(&self) -> Option<&str> {
        self.vault.as_deref()
    }

    /// The key generation, for shares.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The name, for aux-info, prime sets and presignatures.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where the record is stored.
    pub fn path(&self) -> String {
        let base = format!("devices/{}/{}", self.device, self.kind.as_str());
        match self.kind {
            RecordKind::DeviceIdentity => format!("devices/{}/identity{RECORD_SUFFIX}", self.device),
            RecordKind::KeyShare | RecordKind::PendingReshare => format!(
                "{base}/{}/g{}{RECORD_SUFFIX}",
                self.vault.as_deref().unwrap_or_default(),
                self.generation.unwrap_or_default()
            ),
            RecordKind::ShareConfirmation => format!(
                "{base}/{}{RECORD_SUFFIX}",
                self.vault.as_deref().unwrap_or_default()
            ),
            RecordKind::AuxInfo | RecordKind::PrimeSet | RecordKind::PeerKeys | RecordKind::OperationRun => {
                format!(
                    "{base}/{}{RECORD_SUFFIX}",
                    self.name.as_deref().unwrap_or_default()
                )
            }
            RecordKind::Presignature => format!(
                "{base}/{}/{}{RECORD_SUFFIX}",
                self.vault.as_deref().unwrap_or_default(),
                self.name.as_deref().unwrap_or_default()
            ),
        }
    }

    /// Parses a path made by [`RecordId::path`].
    pub fn from_path(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("devices/")?.strip_suffix(RECORD_SUFFIX)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let id = match parts.as_slice() {
            [device, "identity"] => Self::identity(device),
            [device, "key-share", vault, generation] => {
                Self::key_share(device, vault, generation.strip_prefix('g')?.parse().ok()?)
            }
            [device, kind, last] => match RecordKind::from_str(kind)? {
                RecordKind::ShareConfirmation => Self::share_confirmation(device, last),
                RecordKind::AuxInfo => Self::aux_info(device, last),
                RecordKind::PrimeSet => Self::prime_set(device, last),
                RecordKind::PeerKeys => Self::peer_keys(device, last),
                RecordKind::OperationRun => Self::operation_run(device, last),
                _ => return None,
            },
            [device, "reshare-pending", vault, generation] => {
                Self::pending_reshare(device, vault, generation.strip_prefix('g')?.parse().ok()?)
            }
            [device, "presignature", vault, name] => Self::presignature(device, vault, name),
            _ => return None,
        };
        id.ok()
    }

    /// The associated data binding a ciphertext to this identity.
    pub(crate) fn associated_data(&self) -> Vec<u8> {
        let mut ad = Vec::new();
        let mut field = |b: &[u8]| {
            ad.extend_from_slice(&(b.len() as u32).to_be_bytes());
            ad.extend_from_slice(b);
        };
        field(b"vsigner/keystore/record/v1");
        field(self.kind.as_str().as_bytes());
        field(self.device.as_bytes());
        field(self.vault.as_deref().unwrap_or_default().as_bytes());
        field(
            &self
                .generation
                .map(u64::to_be_bytes)
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        );
        field(self.name.as_deref().unwrap_or_default().as_bytes());
        ad
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_names_are_checked() {
        let ids = [
            RecordId::identity("dev-1").unwrap(),
            RecordId::key_share("dev-1", "vault-9", 3).unwrap(),
            RecordId::share_confirmation("dev-1", "vault-9").unwrap(),
            RecordId::aux_info("dev-1", "set-ab12").unwrap(),
            RecordId::prime_set("dev-1", "p7").unwrap(),
            RecordId::presignature("dev-1", "vault-9", "ps-1").unwrap(),
            RecordId::peer_keys("dev-1", "dev-2").unwrap(),
            RecordId::pending_reshare("dev-1", "vault-9", 3).unwrap(),
            RecordId::operation_run("dev-1", "op-5").unwrap(),
        ];
        for id in &ids {
            assert_eq!(
                RecordId::from_path(&id.path()).as_ref(),
                Some(id),
                "{}",
                id.path()
            );
        }
        let ads: std::collections::BTreeSet<Vec<u8>> = ids.iter().map(RecordId::associated_data).collect();
        assert_eq!(ads.len(), ids.len(), "every identity has its own associated data");
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(RecordId::identity(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RecordId::from_path("devices/x/key-share/v/gX.vsrec").is_none());
    }
}
