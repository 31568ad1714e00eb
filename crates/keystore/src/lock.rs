//! One process per keystore: a signer and the commands that copy or fill its keystore
//! (`keystore export`, `import`) take its instance lock, so that a backup is never taken
//! from a keystore a running signer is changing, and two signers never run the same devices
//! from one keystore. (`keystore rekey` and `primes import` do not need it: one replaces the
//! header atomically, the other adds write-once records.)
//!
//! For a local directory the lock is an exclusive advisory lock (`flock`) on
//! `<dir>/instance.lock`, which the operating system releases when the process ends, even
//! if it is killed. An object store (`s3://`, `az://`) has no such lock: there the operator
//! keeps one process per keystore (docs/keystore.md, "One process per keystore").

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use crate::KeystoreError;

/// The file locked in a local keystore directory.
pub const LOCK_FILE: &str = "instance.lock";

/// A held instance lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

fn local_dir(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!url.contains("://")).then(|| PathBuf::from(url))
}

/// Takes the instance lock of the keystore at `url`; `Ok(None)` for a keystore that cannot
/// be locked (an object store, memory) or, unless `create`, a directory that does not exist
/// (opening it then says so). Refused, naming the keystore, while another process holds it.
pub fn lock_instance(url: &str, create: bool) -> Result<Option<InstanceLock>, KeystoreError> {
    let Some(dir) = local_dir(url) else {
        return Ok(None);
    };
    if create {
        std::fs::create_dir_all(&dir).map_err(|e| KeystoreError::storage(url, e))?;
    } else if !dir.is_dir() {
        return Ok(None);
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    // Owner-only: another user who could open it could hold the lock and keep the signer
    // from starting.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(dir.join(LOCK_FILE))
        .map_err(|e| KeystoreError::storage(url, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(InstanceLock { _file: file })),
        Err(TryLockError::WouldBlock) => Err(KeystoreError::Lifecycle(format!(
            "the keystore at {url} is in use by another process (a running signer?): stop it first"
        ))),
        Err(TryLockError::Error(e)) => Err(KeystoreError::storage(url, e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().to_str().unwrap();
        let held = lock_instance(url, true).unwrap().unwrap();
        let err = lock_instance(url, false).unwrap_err().to_string();
        assert!(err.contains("in use by another process"), "{err}");
        drop(held);
        assert!(lock_instance(url, false).unwrap().is_some());
        assert!(lock_instance("memory://", true).unwrap().is_none());
        let missing = dir.path().join("missing");
        assert!(lock_instance(missing.to_str().unwrap(), false).unwrap().is_none());
        assert!(!missing.exists(), "not created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(LOCK_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
