//! The GraphQL API (async-graphql). Every error carries `extensions.code`.
//!
//! Conventions: ids are `ID`; byte strings are lowercase hex without `0x` (except
//! `rawTransaction`, `0x…`); times are RFC 3339 strings; states, kinds and curves are
//! strings (`AwaitingApproval`, `Sign`, `secp256k1`…) so that unknown values get the
//! coordinator's own error codes (e.g. `UNKNOWN_CURVE`).
//!
//! # Layout
//! - this file: the schema, the caller's principal, error mapping.
//! - [`query`], [`mutation`]: the roots; each resolver calls one [`Service`] method. The
//!   mutation root merges the operators' requests ([`mutation`]) and the devices' actions
//!   ([`device_mutation`]).
//! - [`objects`]: devices, vaults, votes, committees, results, audit entries;
//!   [`operation`]: the operation object.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, ErrorExtensions, InputObject, Object, Schema, SimpleObject, ID,
};

use crate::domain::{
    self, Curve, Device, Millis, Operation, OperationDetails, OperationKind, Principal, Vault,
};
use crate::error::{Error, ErrorCode};
use crate::service::{self, Service};
use crate::store::AuditEntry;

pub mod device_mutation;
pub mod mutation;
pub mod objects;
pub mod operation;
pub mod query;

pub use device_mutation::*;
pub use mutation::*;
pub use objects::*;
pub use operation::*;
pub use query::*;

/// The schema type.
pub type CoordinatorSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Who called (set per HTTP request by the server).
#[derive(Debug, Clone)]
pub struct AuthState(pub Result<Principal, Error>);

/// Builds the schema; `service` is `None` only for exporting the SDL.
pub fn build_schema(service: Option<Arc<Service>>) -> CoordinatorSchema {
    let mut b = Schema::build(QueryRoot, MutationRoot::default(), EmptySubscription)
        .limit_depth(12)
        .limit_complexity(5000);
    if let Some(s) = service {
        b = b.data(s);
    }
    b.finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn schema_sdl() -> String {
    build_schema(None).sdl()
}

type GqlResult<T> = async_graphql::Result<T>;

fn gql(e: Error) -> async_graphql::Error {
    let code = e.code().as_str();
    async_graphql::Error::new(e.message().to_owned()).extend_with(|_, ext| ext.set("code", code))
}

fn ctx_service<'a>(ctx: &Context<'a>) -> GqlResult<&'a Arc<Service>> {
    ctx.data::<Arc<Service>>()
        .map_err(|_| gql(Error::internal("graphql", "no service")))
}

fn ctx_principal<'a>(ctx: &Context<'a>) -> GqlResult<&'a Principal> {
    match ctx.data_opt::<AuthState>() {
        Some(AuthState(Ok(p))) => Ok(p),
        Some(AuthState(Err(e))) => Err(gql(e.clone())),
        None => Err(gql(Error::new(
            ErrorCode::Unauthenticated,
            "missing bearer token; get one from POST /oauth/token",
        ))),
    }
}

fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(super) fn opt_i32(v: Option<u16>) -> Option<i32> {
    v.map(i32::from)
}
