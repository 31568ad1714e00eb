//! Protocol tests over the in-process simulators, every signature checked by an
//! independent implementation (`k256`, `p256`, `ed25519-dalek`).

mod adversarial;
mod aux_info;
mod common;
mod ecdsa;
mod schnorr;
mod shares;
