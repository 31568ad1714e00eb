//! Execution ids: every protocol run is bound to the operation it serves.
//!
//! `ExecutionId = SHA-256(domain ‖ len‖protocol tag ‖ len‖operation id ‖ len‖vault id ‖
//! count ‖ (len‖participant id)* ‖ len‖nonce)`, every field length-prefixed (u32, big endian)
//! so that no two different contexts encode to the same bytes. Participants are hashed in
//! the order of the run (their party indices), so two runs that disagree on who is party `i`
//! get different ids and cannot talk to each other.

use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"vsigner/execution-id/v1";

/// Which protocol a run executes; part of the execution id so that messages of one protocol
/// are never accepted by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolTag {
    /// CGGMP24 threshold key generation.
    EcdsaKeygen,
    /// CGGMP24 auxiliary-info generation.
    EcdsaAuxInfo,
    /// Agreement of a device set on reusing the aux-info it already holds.
    EcdsaAuxInfoReuse,
    /// CGGMP24 full signing.
    EcdsaSign,
    /// CGGMP24 presignature generation.
    EcdsaPresign,
    /// FROST key generation (with echo round).
    SchnorrKeygen,
    /// FROST two-round signing.
    SchnorrSign,
    /// Share redistribution (reshare / refresh).
    Reshare,
}

impl ProtocolTag {
    /// Stable name, used in the hash and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolTag::EcdsaKeygen => "ecdsa-keygen",
            ProtocolTag::EcdsaAuxInfo => "ecdsa-aux-info",
            ProtocolTag::EcdsaAuxInfoReuse => "ecdsa-aux-info-reuse",
            ProtocolTag::EcdsaSign => "ecdsa-sign",
            ProtocolTag::EcdsaPresign => "ecdsa-presign",
            ProtocolTag::SchnorrKeygen => "schnorr-keygen",
            ProtocolTag::SchnorrSign => "schnorr-sign",
            ProtocolTag::Reshare => "reshare",
        }
    }
}

/// Everything a run is bound to. All participants must build the same context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionContext<'a> {
    /// The protocol being run.
    pub protocol: ProtocolTag,
    /// The coordinator's operation id (keygen, reshare or sign request).
    pub operation_id: &'a str,
    /// The vault the operation acts on (empty for aux-info, which is per device set).
    pub vault_id: &'a str,
    /// Device ids in party-index order: `participants[i]` is party `i` of this run.
    pub participants: &'a [&'a str],
    /// A fresh value chosen by the coordinator for this run (e.g. an attempt counter).
    pub nonce: &'a [u8],
}

/// The 32-byte id of one protocol run.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ExecutionId([u8; 32]);

impl ExecutionId {
    /// Derives the id of the run described by `ctx`.
    pub fn derive(ctx: &ExecutionContext<'_>) -> Self {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(bytes);
        };
        field(DOMAIN);
        field(ctx.protocol.as_str().as_bytes());
        field(ctx.operation_id.as_bytes());
        field(ctx.vault_id.as_bytes());
        field(&(ctx.participants.len() as u32).to_be_bytes());
        for p in ctx.participants {
            field(p.as_bytes());
        }
        field(ctx.nonce);
        ExecutionId(h.finalize().into())
    }

    /// Wraps raw bytes (e.g. read from a message header).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ExecutionId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The same id in the form the CGGMP24 library takes.
    pub(crate) fn for_cggmp(&self) -> cggmp24::ExecutionId<'_> {
        cggmp24::ExecutionId::new(&self.0)
    }
}

impl std::fmt::Debug for ExecutionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExecutionId({self})")
    }
}

impl std::fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(participants: &'a [&'a str], nonce: &'a [u8]) -> ExecutionContext<'a> {
        ExecutionContext {
            protocol: ProtocolTag::EcdsaSign,
            operation_id: "op-1",
            vault_id: "vault-1",
            participants,
            nonce,
        }
    }

    #[test]
    fn every_field_changes_the_id() {
        let base = ExecutionId::derive(&ctx(&["a", "b"], b"1"));
        assert_eq!(base, ExecutionId::derive(&ctx(&["a", "b"], b"1")));
        assert_ne!(
            base,
            ExecutionId::derive(&ctx(&["b", "a"], b"1")),
            "order matters"
        );
        assert_ne!(base, ExecutionId::derive(&ctx(&["a", "b"], b"2")));
        assert_ne!(
            base,
            ExecutionId::derive(&ctx(&["ab"], b"1")),
            "no concatenation ambiguity"
        );
        let mut other = ctx(&["a", "b"], b"1");
        other.protocol = ProtocolTag::EcdsaPresign;
        assert_ne!(base, ExecutionId::derive(&other));
        let mut other = ctx(&["a", "b"], b"1");
        other.operation_id = "op-2";
        assert_ne!(base, ExecutionId::derive(&other));
        let mut other = ctx(&["a", "b"], b"1");
        other.vault_id = "vault-2";
        assert_ne!(base, ExecutionId::derive(&other));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = ExecutionContext {
            operation_id: "ab",
            vault_id: "c",
            ..ctx(&["x"], b"")
        };
        let b = ExecutionContext {
            operation_id: "a",
            vault_id: "bc",
            ..ctx(&["x"], b"")
        };
        assert_ne!(ExecutionId::derive(&a), ExecutionId::derive(&b));
    }
}
