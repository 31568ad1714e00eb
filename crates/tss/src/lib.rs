//! Threshold-signature protocols for vsigner.
//!
//! **This crate does no network I/O**, reads no clock and uses no ambient randomness: every
//! protocol is a `round_based` async function that takes a party (a stream of incoming and a
//! sink of outgoing [`WireMessage`]s) and a caller-supplied RNG, so any transport can carry it
//! (the MQTT transport of the daemon, or the in-process simulator in tests).
//!
//! # Layout
//! - [`execution`]: the [`ExecutionId`] of a protocol run, derived from the operation it serves.
//! - [`wire`]: [`WireMessage`], the bytes a transport carries, and the checks every incoming
//!   message passes before a protocol sees it (execution id, sender, round, encoding).
//! - [`ecdsa`]: threshold ECDSA on secp256k1 and P-256 by CGGMP24 (`cggmp24`): DKG with HD,
//!   aux-info from pre-generated primes, full signing, presignatures and online signing.
//! - [`schnorr`]: threshold Schnorr by FROST (ZF `frost-*`): EdDSA ed25519 and BIP-340
//!   (Taproot), DKG with an echo round and two-round signing.
//! - [`hd`]: BIP-32 non-hardened derivation paths, child keys and Ethereum addresses.
//! - [`primes`]: the safe-prime pool that feeds aux-info generation.
//! - [`share`]: the versioned storage format of key shares, aux-info and prime sets.
//! - [`simulation`]: a deterministic in-process network with fault injection, for tests and
//!   benchmarks.
//! - [`error`]: one error type; [`Error::culprits`] names the parties that misbehaved.
//!
//! # Security
//! Secret material (key shares, aux-info primes, presignatures, prime sets) is held in types
//! whose `Debug` prints `<redacted>` and whose secret scalars are zeroized on drop (by the
//! underlying libraries' `SecretScalar`/`SigningShare`, and by [`zeroize`] for buffers we own).
//! Big integers (Paillier primes, protocol intermediates) live in GMP memory, which
//! `zeroize` cannot reach; every entry point that creates them first installs
//! [`vsigner_memory::wipe_gmp_on_free`], so GMP wipes each block before freeing it.

pub mod ecdsa;
pub mod error;
pub mod execution;
pub mod hd;
pub mod primes;
pub mod reshare;
pub mod schnorr;
pub mod share;
pub mod simulation;
pub mod wire;

pub use error::{Error, Fault};
pub use execution::{ExecutionContext, ExecutionId, ProtocolTag};
pub use wire::WireMessage;

/// Index of a party within one protocol run (`0..n` for keygen and aux-info, `0..t` for signing).
pub type PartyIndex = u16;

/// Re-exported so that callers drive protocols with the same `round_based` version.
pub use round_based;
