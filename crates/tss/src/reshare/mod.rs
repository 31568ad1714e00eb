//! Resharing: move a key to a new set of holders and/or a new threshold, same public key.
//!
//! Feldman-VSS redistribution (Desmedt–Jajodia, Wong–Wang–Wing); the rounds and the reasoning
//! are written down in `docs/reshare.md`. [`run`] is the protocol, generic over the curve;
//! [`crate::ecdsa::reshare`] and [`crate::schnorr::reshare`] adapt the two key-share
//! families to it. A refresh (same set, same threshold) is a reshare onto the same set.

mod key_info;
mod protocol;
mod setup;

pub use key_info::KeyInfo;
pub use protocol::run;
pub use setup::{Acknowledged, DealerShare, NewShare, ReshareOutput, ReshareSetup, Role};
