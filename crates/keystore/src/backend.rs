//! Where record bytes are kept: a local directory (default), or any `object_store`.
//!
//! The local directory is written durably by this crate rather than by `object_store`'s
//! local backend, so that every step of a write is explicit (and a test can crash the
//! process between any two): write a temp file in the target's directory, `fsync` it,
//! publish it (`link` for records written once, which fails if the name exists; `rename`
//! for the few that are replaced), `fsync` the directory, remove the temp name. A crash
//! leaves the old value or the new one, never neither; a leftover temp file is reported by
//! [`Backend::leftovers`] and is harmless.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand_core::{OsRng, RngCore};

use crate::KeystoreError;

/// Whether a write may replace an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail with [`KeystoreError::AlreadyExists`] if the name exists.
    Create,
    /// Replace atomically.
    Overwrite,
}

/// A store of named byte strings.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Writes `bytes` at `path`, atomically and durably.
    fn put(&self, path: &str, bytes: Vec<u8>, mode: WriteMode) -> BoxFuture<'_, Result<(), KeystoreError>>;
    /// Reads `path`; `None` if absent.
    fn get(&self, path: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, KeystoreError>>;
    /// Removes `path` durably; absent is fine.
    fn delete(&self, path: &str) -> BoxFuture<'_, Result<(), KeystoreError>>;
    /// Every stored path under `prefix`, with its size.
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, u64)>, KeystoreError>>;
    /// Traces of interrupted writes (paths), for start-up reports.
    fn leftovers(&self) -> BoxFuture<'_, Result<Vec<String>, KeystoreError>>;
    /// Removes the traces of interrupted writes.
    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, KeystoreError>>;
}

/// Opens the backend named by a `STORAGE_BUCKET_URL`: a directory path or `file://` URL
/// (default), `memory://` (tests), or an `object_store` URL such as `s3://bucket/prefix` or
/// `az://container/prefix` (credentials from the usual `AWS_*` / `AZURE_*` variables).
pub fn from_url(url: &str) -> Result<Arc<dyn Backend>, KeystoreError> {
    if url == "memory://" || url == "memory:///" {
        return Ok(Arc::new(ObjectStoreBackend {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: object_store::path::Path::default(),
            location: url.to_owned(),
        }));
    }
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(LocalDir::new(path)));
    }
    if !url.contains("://") {
        return Ok(Arc::new(LocalDir::new(url)));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| KeystoreError::invalid("STORAGE_BUCKET_URL", format!("{url}: {e}")))?;
    let options = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("AZURE_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v));
    // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
        KeystoreError::invalid(
            "STORAGE_BUCKET_URL",
            format!("{url}: {e} (expected a directory, file://, memory://, s3:// or az://)"),
        )
    })?;
    Ok(Arc::new(ObjectStoreBackend {
        store: Arc::from(store),
        prefix,
        location: url.to_owned(),
    }))
}

/// A step of a local write after which a test may crash the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteStep {
    /// The temp file holds the bytes.
    TempWritten = 1,
    /// The temp file is synced.
    TempSynced = 2,
    /// The value is published under its name.
    Published = 3,
    /// The directory is synced.
    DirSynced = 4,
}

static CRASH_AFTER: AtomicU8 = AtomicU8::new(0);

/// Test support: abort the process right after `step` of the next local write.
#[doc(hidden)]
pub fn crash_after(step: WriteStep) {
    CRASH_AFTER.store(step as u8, Ordering::SeqCst);
}

fn reached(step: WriteStep) {
    if CRASH_AFTER.load(Ordering::Relaxed) == step as u8 {
        std::process::abort();
    }
}

/// A local directory written durably.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

const TEMP_MARK: &str = ".tmp-";

impl LocalDir {
    /// The directory at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    fn full(&self, path: &str) -> Result<PathBuf, KeystoreError> {
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.starts_with('.'))
        {
            return Err(KeystoreError::invalid("path", path.to_owned()));
        }
        Ok(self.root.join(path))
    }

    fn put_blocking(&self, path: &str, bytes: &[u8], mode: WriteMode) -> Result<(), KeystoreError> {
        use std::io::Write;
        let target = self.full(path)?;
        let io = |e: std::io::Error| KeystoreError::storage(target.display().to_string(), e);
        let dir = target
            .parent()
            .ok_or_else(|| KeystoreError::invalid("path", path.to_owned()))?
            .to_path_buf();
        create_dirs_durably(&self.root, &dir).map_err(io)?;
        let file_name = target.file_name().and_then(|n| n.to_str()).unwrap_or("record");
        let temp = dir.join(format!(".{file_name}{TEMP_MARK}{:016x}", OsRng.next_u64()));
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            // Owner-only, as the directories.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&temp).map_err(io)?;
            f.write_all(bytes).map_err(io)?;
            reached(WriteStep::TempWritten);
            f.sync_all().map_err(io)?;
            reached(WriteStep::TempSynced);
        }
        let published = match mode {
            WriteMode::Create => std::fs::hard_link(&temp, &target),
            WriteMode::Overwrite => std::fs::rename(&temp, &target),
        };
        if let Err(e) = published {
            let _ = std::fs::remove_file(&temp);
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeystoreError::AlreadyExists {
                    path: path.to_owned(),
                }
            } else {
                io(e)
            });
        }
        reached(WriteStep::Published);
        sync_dir(&dir).map_err(io)?;
        reached(WriteStep::DirSynced);
        if mode == WriteMode::Create {
            std::fs::remove_file(&temp).map_err(io)?;
            sync_dir(&dir).map_err(io)?;
        }
        Ok(())
    }

    fn walk(&self, prefix: &str, temps: bool) -> Result<Vec<(String, u64)>, KeystoreError> {
        let mut out = Vec::new();
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.root.join(prefix.trim_end_matches('/'))
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(KeystoreError::storage(dir.display().to_string(), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| KeystoreError::storage(dir.display().to_string(), e))?;
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    // Gone since the directory was read: another task's temporary file
                    // (published or abandoned) or a record deleted meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(KeystoreError::storage(entry.path().display().to_string(), e)),
                };
                let path = entry.path();
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(TEMP_MARK) != temps {
                    continue;
                }
                let rel = path
                    .strip_prefix(&self.root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents below `root`, syncing each parent so that the new
/// entries survive a crash.
fn create_dirs_durably(root: &Path, dir: &Path) -> std::io::Result<()> {
    // The parent of a relative one-component path is "": the working directory.
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if parent != dir && (parent.starts_with(root) || !root.exists()) {
            create_dirs_durably(root, parent)?;
        }
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })?;
    }
    Ok(())
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeystoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, KeystoreError>> {
    async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| KeystoreError::storage("local directory", format!("I/O task failed: {e}")))?
    }
    .boxed()
}

impl Backend for LocalDir {
    fn put(&self, path: &str, bytes: Vec<u8>, mode: WriteMode) -> BoxFuture<'_, Result<(), KeystoreError>> {
        let (me, path) = (self.clone(), path.to_owned());
        blocking(move || me.put_blocking(&path, &bytes, mode))
    }

    fn get(&self, path: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, KeystoreError>> {
        let full = self.full(path);
        blocking(move || {
            let full = full?;
            match std::fs::read(&full) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(KeystoreError::storage(full.display().to_string(), e)),
            }
        })
    }

    fn delete(&self, path: &str) -> BoxFuture<'_, Result<(), KeystoreError>> {
        let full = self.full(path);
        blocking(move || {
            let full = full?;
            match std::fs::remove_file(&full) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(KeystoreError::storage(full.display().to_string(), e)),
            }
            if let Some(dir) = full.parent() {
                sync_dir(dir).map_err(|e| KeystoreError::storage(dir.display().to_string(), e))?;
            }
            Ok(())
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, u64)>, KeystoreError>> {
        let (me, prefix) = (self.clone(), prefix.to_owned());
        blocking(move || me.walk(&prefix, false))
    }

    fn leftovers(&self) -> BoxFuture<'_, Result<Vec<String>, KeystoreError>> {
        let me = self.clone();
        blocking(move || Ok(me.walk("", true)?.into_iter().map(|(p, _)| p).collect()))
    }

    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, KeystoreError>> {
        let me = self.clone();
        blocking(move || {
            let temps = me.walk("", true)?;
            for (p, _) in &temps {
                let full = me.root.join(p);
                match std::fs::remove_file(&full) {
                    Ok(()) => {}
                    // Gone meanwhile (its write finished or gave up).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(KeystoreError::storage(full.display().to_string(), e)),
                }
            }
            Ok(temps.len())
        })
    }
}

/// Any `object_store` (memory, S3, Azure...). Object stores publish whole objects
/// atomically; create-only writes use `PutMode::Create`.
#[derive(Debug)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: object_store::path::Path,
    location: String,
}

impl ObjectStoreBackend {
    fn path(&self, path: &str) -> object_store::path::Path {
        path.split('/').fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn err(&self, e: impl std::fmt::Display) -> KeystoreError {
        KeystoreError::storage(self.location.clone(), e)
    }
}

impl Backend for ObjectStoreBackend {
    fn put(&self, path: &str, bytes: Vec<u8>, mode: WriteMode) -> BoxFuture<'_, Result<(), KeystoreError>> {
        let location = self.path(path);
        let path = path.to_owned();
        async move {
            let mode = match mode {
                WriteMode::Create => PutMode::Create,
                WriteMode::Overwrite => PutMode::Overwrite,
            };
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&location, PutPayload::from(bytes), opts)
                .await
            {
                Ok(_) => Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => Err(KeystoreError::AlreadyExists { path }),
                Err(e) => Err(self.err(e)),
            }
        }
        .boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, KeystoreError>> {
        let location = self.path(path);
        async move {
            match self.store.get(&location).await {
                Ok(r) => Ok(Some(r.bytes().await.map_err(|e| self.err(e))?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(e)),
            }
        }
        .boxed()
    }

    fn delete(&self, path: &str) -> BoxFuture<'_, Result<(), KeystoreError>> {
        let location = self.path(path);
        async move {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err(e)),
            }
        }
        .boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, u64)>, KeystoreError>> {
        let base = if prefix.is_empty() {
            self.prefix.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))
        };
        async move {
            let metas: Vec<object_store::ObjectMeta> = self
                .store
                .list(Some(&base))
                .map_err(|e| self.err(e))
                .try_collect()
                .await?;
            let strip = self.prefix.as_ref();
            let mut out: Vec<(String, u64)> = metas
                .into_iter()
                .map(|m| {
                    let full = m.location.as_ref();
                    let rel = full
                        .strip_prefix(strip)
                        .unwrap_or(full)
                        .trim_start_matches('/')
                        .to_owned();
                    (rel, m.size)
                })
                .collect();
            out.sort();
            Ok(out)
        }
        .boxed()
    }

    fn leftovers(&self) -> BoxFuture<'_, Result<Vec<String>, KeystoreError>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    fn remove_leftovers(&self) -> BoxFuture<'_, Result<usize, KeystoreError>> {
        futures::future::ready(Ok(0)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_are_accepted_or_refused_clearly() {
        for ok in [
            "memory://",
            "/tmp/vsigner-store",
            "file:///tmp/vsigner-store",
            "s3://bucket/prefix",
        ] {
            assert!(from_url(ok).is_ok(), "{ok} refused");
        }
        let err = from_url("ftp://example/x").unwrap_err().to_string();
        assert!(
            err.contains("STORAGE_BUCKET_URL") && err.contains("s3://"),
            "{err}"
        );
    }

    #[test]
    fn a_listing_skips_files_that_vanish_meanwhile() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let root = tempfile::tempdir().unwrap();
        let dir = LocalDir::new(root.path());
        dir.put_blocking("devices/d/share.vsrec", b"x", WriteMode::Overwrite)
            .unwrap();
        // Another task's writes come and go (temporary files, deleted records) while the
        // directory is listed.
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (stop, d) = (stop.clone(), root.path().join("devices/d"));
            std::thread::spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = d.join(format!("run-{}.vsrec", k % 64));
                    let _ = std::fs::write(&p, b"x");
                    let _ = std::fs::remove_file(&p);
                    k += 1;
                }
            })
        };
        let started = std::time::Instant::now();
        let mut walks = 0;
        let listed = loop {
            let listed = dir.walk("devices", false);
            walks += 1;
            if listed.is_err() || started.elapsed() > std::time::Duration::from_secs(2) {
                break listed;
            }
        };
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        let listed = listed.unwrap_or_else(|e| panic!("walk {walks}: {e}"));
        assert!(listed.iter().any(|(p, _)| p == "devices/d/share.vsrec"));
    }

    #[test]
    fn local_paths_cannot_escape_the_root() {
        let dir = LocalDir::new("/tmp/root");
        for bad in ["../x", "a/../../x", ".hidden", "a//b", ""] {
            assert!(dir.full(bad).is_err(), "{bad:?} accepted");
        }
        assert!(dir.full("devices/d/identity.vsrec").is_ok());
    }
}
