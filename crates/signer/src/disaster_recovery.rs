//! Disaster-recovery files: for every share generation a device confirms, a `.dr` file in
//! io.finnet's format (`vsigner_recovery`), encrypted to the operator's ML-KEM-768 key
//! (`DisasterRecoveryPublicKey`), at `<DisasterRecoveryDir>/<deviceId>/<vaultId>.<algo>.<curve>.dr`.
//!
//! - **What is written.** The device's shares of the vault's confirmed generation (several
//!   for a weighted device), the vault's public key and threshold. Nothing secret is written
//!   unencrypted: the plaintext exists in zeroizing memory only.
//! - **When.** After a keygen is confirmed and after a reshare is committed (the device's new
//!   generation); the file of the generation before is removed before the commit, so a file
//!   never holds a generation older than the confirmed one. A device that leaves a vault's
//!   signer set removes its file with its share. At start, every confirmed generation
//!   without a file gets one (a key configured later, a crash between commit and write).
//! - **How.** Through the keystore's durable local writer (`vsigner_keystore::backend::LocalDir`):
//!   a temporary file in the same directory, synced, renamed over the old one, the directory
//!   synced; files 0600, directories 0700. A reader sees the old file or the new one.
//!
//! The coordinator names the request ids in the clear fields; they are labels only. What
//! the file holds comes from the keystore.

use std::path::{Path, PathBuf};

use vsigner_recovery::{affine_coordinates, Curve, DrFile, DrHeader, DrPublicKey, Share, Shares};

use vsigner_keystore::backend::{Backend as _, LocalDir, WriteMode};
use vsigner_keystore::RecordId;

use crate::config::DisasterRecoveryConfig;

/// The operations that made a generation: its own and the one before (after a reshare).
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    /// The keygen or reshare that made the generation.
    pub request_id: String,
    /// The operation of the generation before, after a reshare.
    pub previous_request_id: Option<String>,
}

/// Where a device's `.dr` files go and the key they are encrypted to.
#[derive(Debug, Clone)]
pub struct DisasterRecovery {
    public_key: DrPublicKey,
    dir: PathBuf,
    /// The directory, written as the keystore writes its local records.
    files: LocalDir,
}

/// The recovery format's name of a vault curve (the coordinator's name).
pub fn recovery_curve(curve: &str) -> Result<Curve, String> {
    match vsigner_approval::Curve::from_name(curve) {
        Some(vsigner_approval::Curve::Secp256k1) => Ok(Curve::Secp256k1),
        Some(vsigner_approval::Curve::Secp256r1) => Ok(Curve::Secp256r1),
        Some(vsigner_approval::Curve::Ed25519) => Ok(Curve::Ed25519),
        Some(vsigner_approval::Curve::Bip340) => Ok(Curve::Bip340),
        None => Err(format!("unsupported curve {curve:?}")),
    }
}

impl DisasterRecovery {
    /// Creates the directory (owner-only) if needed and checks that files can be written in
    /// it; the error names the directory and what to fix.
    pub fn open(config: &DisasterRecoveryConfig) -> Result<Self, String> {
        let dir = config.dir.clone();
        let said = |why: String| {
            format!(
                "DisasterRecoveryDir {}: {why} (the signer writes its .dr files there: a directory owned by the signer's user, mode 0700, or set another directory)",
                dir.display()
            )
        };
        let fail = |e: std::io::Error| said(e.to_string());
        create_private_dir(&dir).map_err(fail)?;
        let meta = std::fs::metadata(&dir).map_err(fail)?;
        if !meta.is_dir() {
            return Err(said("not a directory".into()));
        }
        // A directory others can write lets them plant files and links where the signer
        // writes; one owned by another user can be changed by that user.
        let probe = dir.join(format!(".write-check-{}", random_suffix()));
        let file = new_file(&probe).map_err(fail)?;
        let probe_meta = file.metadata().map_err(fail);
        let _ = std::fs::remove_file(&probe);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                return Err(said(format!("other users can write it (mode {mode:o})")));
            }
            if probe_meta?.uid() != meta.uid() {
                return Err(said("it belongs to another user".into()));
            }
        }
        #[cfg(not(unix))]
        probe_meta?;
        Ok(Self {
            public_key: config.public_key.clone(),
            files: LocalDir::new(&dir),
            dir,
        })
    }

    /// Removes the temporary files of writes a crash interrupted: encrypted shares of no use
    /// that would be copied with the rest.
    pub async fn sweep_interrupted_writes(&self) -> Result<usize, String> {
        self.files.remove_leftovers().await.map_err(|e| e.to_string())
    }

    /// The file of `device`'s shares of `vault` (on `curve`, the coordinator's name),
    /// relative to the directory. The ids name files as they name keystore records (no
    /// separator, no leading dot), checked by the keystore's rule.
    fn relative(&self, device: &str, vault: &str, curve: &str) -> Result<String, String> {
        let curve = recovery_curve(curve)?;
        RecordId::key_share(device, vault, 0).map_err(|e| format!("cannot name a file: {e}"))?;
        Ok(format!("{device}/{}", curve.file_name(vault)))
    }

    /// The file of `device`'s shares of `vault` (on `curve`, the coordinator's name).
    pub fn path(&self, device: &str, vault: &str, curve: &str) -> Result<PathBuf, String> {
        Ok(self.dir.join(self.relative(device, vault, curve)?))
    }

    /// Writes the file of `device`'s shares of `vault` from the share record `record` (the
    /// confirmed generation), replacing the one before, all or nothing (the keystore's
    /// durable write: temporary file, fsync, rename, directory fsync). Returns its path.
    pub async fn write(
        &self,
        device: &str,
        vault: &str,
        curve_name: &str,
        ids: &RequestIds,
        record: &[u8],
    ) -> Result<PathBuf, String> {
        let relative = self.relative(device, vault, curve_name)?;
        let curve = recovery_curve(curve_name)?;
        let exports = crate::protocol::share_exports(curve_name, record).map_err(|e| e.reason)?;
        let first = exports.first().ok_or("no stored share")?;
        if exports
            .iter()
            .any(|e| e.public_key != first.public_key || e.threshold != first.threshold)
        {
            return Err("the stored shares are of different keys".into());
        }
        let shares = Shares {
            vault_id: vault.to_owned(),
            curve,
            threshold: u32::from(first.threshold),
            public_key: affine_coordinates(curve, &first.public_key).map_err(|e| e.to_string())?,
            shares: exports
                .iter()
                .map(|e| Share {
                    id: e.evaluation_point,
                    value: e.secret.clone(),
                })
                .collect(),
        };
        let plaintext = shares.to_json().map_err(|e| e.to_string())?;
        let file = DrFile::seal(
            &self.public_key,
            DrHeader {
                vault_id: vault.to_owned(),
                request_id: ids.request_id.clone(),
                previous_request_id: ids.previous_request_id.clone(),
                algo: curve.algo().to_owned(),
                curve: curve.envelope_name().to_owned(),
            },
            &plaintext,
        )
        .map_err(|e| e.to_string())?;
        self.files
            .put(&relative, file.to_json(), WriteMode::Overwrite)
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.dir.join(relative))
    }

    /// Removes the file of `device`'s shares of `vault`, if there is one; whether there was.
    pub async fn remove(&self, device: &str, vault: &str, curve: &str) -> Result<bool, String> {
        let relative = self.relative(device, vault, curve)?;
        if !self.dir.join(&relative).exists() {
            return Ok(false);
        }
        self.files.delete(&relative).await.map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Whether the file of `device`'s shares of `vault` exists.
    pub fn exists(&self, device: &str, vault: &str, curve: &str) -> Result<bool, String> {
        Ok(self.path(device, vault, curve)?.exists())
    }
}

/// The scheme (the coordinator's curve name) of a stored share record: each scheme's records
/// carry their own tag, so exactly one reads it. Local: no one else says which it is.
pub fn curve_of_record(record: &[u8]) -> Option<&'static str> {
    every_curve()
        .into_iter()
        .find(|curve| crate::protocol::share_exports(curve, record).is_ok())
}

/// Every file name a device's file of `vault` can have (one per scheme).
pub fn every_curve() -> [&'static str; 4] {
    ["secp256k1", "secp256r1", "ed25519", "bip340"]
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Creates a file that does not exist (never follows a planted link: `O_CREAT | O_EXCL`),
/// readable by its owner only.
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(dir: &Path) -> (DisasterRecoveryConfig, vsigner_recovery::DrPrivateKey) {
        let private = vsigner_recovery::DrPrivateKey::generate();
        (
            DisasterRecoveryConfig {
                public_key: private.public_key(),
                dir: dir.to_owned(),
            },
            private,
        )
    }

    #[test]
    fn ids_from_the_coordinator_cannot_leave_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, _) = config(tmp.path());
        let dr = DisasterRecovery::open(&config).unwrap();
        for vault in ["../x", "a/b", ".hidden", "", "a\\b"] {
            assert!(dr.path("dev", vault, "secp256k1").is_err(), "{vault:?}");
        }
        assert!(dr.path("../dev", "v", "secp256k1").is_err());
        assert_eq!(
            dr.path("dev-1", "vault-1", "ed25519").unwrap(),
            tmp.path().join("dev-1").join("vault-1.eddsa.ed25519.dr")
        );
        assert!(dr.path("dev", "v", "bn254").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_other_users_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (config, _) = config(&dir);
        let err = DisasterRecovery::open(&config).unwrap_err();
        assert!(err.contains("other users can write it (mode 777)"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A crash's temporary file is swept; the probe does not stay.
        std::fs::create_dir(dir.join("dev")).unwrap();
        std::fs::write(dir.join("dev/.v.eddsa.ed25519.dr.tmp-0123"), b"x").unwrap();
        std::fs::write(dir.join("dev/v.eddsa.ed25519.dr"), b"kept").unwrap();
        let dr = DisasterRecovery::open(&config).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(dr.sweep_interrupted_writes())
            .unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the probe is gone");
        assert_eq!(
            std::fs::read_dir(dir.join("dev")).unwrap().count(),
            1,
            "the temporary file is gone"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_of_another_user_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        // Only root can give a directory away; elsewhere there is nothing to check.
        if std::process::Command::new("chown")
            .args(["65534", dir.to_str().unwrap()])
            .status()
            .map_or(true, |s| !s.success())
            || std::fs::metadata(&dir).unwrap().uid() != 65534
        {
            eprintln!("skipped: cannot give a directory to another user here (not root)");
            return;
        }
        let (config, _) = config(&dir);
        let err = DisasterRecovery::open(&config).unwrap_err();
        assert!(err.contains("belongs to another user"), "{err}");
    }

    #[test]
    fn an_unwritable_directory_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let (config, _) = config(&file.join("sub"));
        let err = DisasterRecovery::open(&config).unwrap_err();
        assert!(
            err.contains("DisasterRecoveryDir") && err.contains("a-file"),
            "{err}"
        );
    }
}
