//! The query root.

use super::*;

/// Operation filter.
#[derive(InputObject, Default)]
pub struct OperationFilter {
    vault_id: Option<ID>,
    /// A state name, e.g. `Completed`.
    state: Option<String>,
    /// `Keygen` | `Reshare` | `Sign` | `Presign`.
    kind: Option<String>,
    /// Default 100, at most 1000.
    limit: Option<i32>,
    /// Operations to skip first (newest first), for reading further pages; default 0.
    offset: Option<i32>,
}

/// Queries.
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The calling API client.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        let p = ctx_principal(ctx)?;
        Ok(Me {
            client_id: ID(p.client_id.to_string()),
            organisation_id: ID(p.org_id.to_string()),
            role: p.role.as_str().to_owned(),
        })
    }
    /// The organisation's API clients, revoked ones included (operators).
    async fn api_clients(&self, ctx: &Context<'_>) -> GqlResult<Vec<ApiClientObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .api_clients(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(ApiClientObj::from)
            .collect())
    }
    /// The passkeys people registered in the console, with the entries of a device's
    /// passkeys file (operators).
    async fn console_passkeys(&self, ctx: &Context<'_>) -> GqlResult<Vec<ConsolePasskeyObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .console_passkeys(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
    /// The organisation's web console users.
    async fn console_users(&self, ctx: &Context<'_>) -> GqlResult<Vec<ConsoleUserObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .console_users(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
    async fn devices(&self, ctx: &Context<'_>) -> GqlResult<Vec<DeviceObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .devices(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(DeviceObj)
            .collect())
    }
    async fn device(&self, ctx: &Context<'_>, id: ID) -> GqlResult<DeviceObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?.device(p, &id).await.map(DeviceObj).map_err(gql)
    }
    async fn vaults(&self, ctx: &Context<'_>) -> GqlResult<Vec<VaultObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .vaults(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(VaultObj)
            .collect())
    }
    async fn vault(&self, ctx: &Context<'_>, id: ID) -> GqlResult<VaultObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?.vault(p, &id).await.map(VaultObj).map_err(gql)
    }
    /// People's answers to what a human-approved device asked about an operation (the
    /// device's signer client; the device checks them).
    async fn human_answers(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
    ) -> GqlResult<Vec<HumanAnswerObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .human_answers(p, &operation_id, &device_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
    async fn operation(&self, ctx: &Context<'_>, id: ID) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .operation(p, &id)
            .await
            .map(OperationObj)
            .map_err(gql)
    }
    /// Operation `id` as soon as it is final (Completed, Failed, Rejected, Expired), or no
    /// longer in `state` when that is given; otherwise as it is after `seconds` (1 to 60).
    /// An operator waits for a result, or for each change of state, in one request instead
    /// of polling. At most 4 in one request (its complexity), and 1024 waiting at once in
    /// all (then `TOO_MANY_REQUESTS`).
    #[graphql(complexity = "1000 + child_complexity")]
    async fn wait_for_operation(
        &self,
        ctx: &Context<'_>,
        id: ID,
        seconds: i32,
        state: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let within = u64::try_from(seconds)
            .ok()
            .filter(|s| (1..=60).contains(s))
            .ok_or_else(|| gql(Error::invalid_input("seconds must be 1 to 60")))?;
        let state = state
            .as_deref()
            .map(crate::domain::OperationState::parse)
            .transpose()
            .map_err(gql)?;
        ctx_service(ctx)?
            .wait_for_operation(p, &id, state, std::time::Duration::from_secs(within))
            .await
            .map(OperationObj)
            .map_err(gql)
    }
    /// Operations, newest first.
    async fn operations(
        &self,
        ctx: &Context<'_>,
        filter: Option<OperationFilter>,
    ) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        let f = filter.unwrap_or_default();
        let f = service::OperationFilter {
            vault_id: f.vault_id.map(|i| i.0),
            state: f.state,
            kind: f.kind,
            limit: f.limit.map(i64::from),
            offset: f.offset.map(i64::from),
        };
        Ok(ctx_service(ctx)?
            .operations(p, f)
            .await
            .map_err(gql)?
            .into_iter()
            .map(OperationObj)
            .collect())
    }
    /// Operations (AwaitingApproval) on which this device may still vote, oldest first.
    async fn operations_awaiting_vote(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
    ) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .operations_awaiting_vote(p, &device_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(OperationObj)
            .collect())
    }
    /// Operations (Ready or InProgress) whose committee includes this device, oldest first.
    async fn operations_ready(&self, ctx: &Context<'_>, device_id: ID) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .operations_ready(p, &device_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(OperationObj)
            .collect())
    }
    /// The append-only audit log (of one entity, or the whole organisation).
    async fn audit_log(&self, ctx: &Context<'_>, entity_id: Option<ID>) -> GqlResult<Vec<AuditEntryObj>> {
        let p = ctx_principal(ctx)?;
        let entries = ctx_service(ctx)?
            .audit_log(p, entity_id.as_ref().map(|i| i.0.as_str()))
            .await
            .map_err(gql)?;
        Ok(entries.into_iter().map(AuditEntryObj::from).collect())
    }
}
