//! Encrypted, crash-safe storage of a device's secrets: identities, key shares (per vault
//! and key generation), aux-info, prime sets and presignatures.
//!
//! # Layout
//! - [`record`]: what a record is ([`RecordId`]: kind, device, vault, generation, name),
//!   where it is stored, and the associated data that binds its identity to its ciphertext.
//! - [`sealing`]: how the data key is protected at rest ([`SealingProvider`]: passphrase
//!   with Argon2id, key file, Gramine/SGX sealing key; room for a cloud KMS).
//! - [`backend`]: where bytes go: a local directory written durably (temp file, fsync,
//!   atomic link or rename, directory fsync) or any `object_store` (`memory://`, `s3://`,
//!   `az://`), chosen by `STORAGE_BUCKET_URL`.
//! - [`store`]: the [`Keystore`]: opening and unlocking, put/get/take/delete of records.
//! - [`generations`]: share generations that are never deleted before their successor is
//!   confirmed, and start-up leftovers.
//!
//! # Security
//! Every record is encrypted with XChaCha20-Poly1305 under a random 256-bit data key, with
//! its identity as associated data: a record modified, truncated, or moved to another name
//! is refused. The data key is stored only wrapped by the sealing provider's key. Plaintexts
//! are returned in [`zeroize::Zeroizing`] buffers; no error or `Debug` output contains a
//! secret.

pub mod backend;
pub mod backup;
pub mod error;
pub mod generations;
pub mod lock;
pub mod record;
pub mod sealing;
pub mod store;

pub use error::KeystoreError;
pub use generations::{Leftovers, PublicKeyOf};
pub use record::{RecordId, RecordInfo, RecordKind};
pub use sealing::{KeyFile, Passphrase, SealingProvider, SgxSealing};
pub use store::Keystore;
