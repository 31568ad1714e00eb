//! Protocol tests over the in-process simulators, every signature checked by an
//! independent implementation (`k256`, `p256`, `ed25519-dalek`).

// Tests may unwrap, and use the OS RNG directly (the library takes RNGs as arguments).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

mod adversarial;
mod aux_info;
mod common;
mod ecdsa;
mod reshare;
mod schnorr;
mod shares;
