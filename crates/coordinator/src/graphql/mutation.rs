//! The mutation root: the operators' requests (API clients, vaults, signatures,
//! presignatures, reshares) here, and the devices' own actions in [`super::device_mutation`];
//! merged into one `Mutation` type.

use async_graphql::MergedObject;

use super::*;

/// A signer in a signer set.
#[derive(InputObject)]
pub struct SignerInput {
    device_id: ID,
    /// Must be 1 (default).
    weight: Option<i32>,
}

fn signer_inputs(list: Vec<SignerInput>) -> Vec<service::SignerInput> {
    list.into_iter()
        .map(|s| service::SignerInput {
            device_id: s.device_id.0,
            weight: i64::from(s.weight.unwrap_or(1)),
        })
        .collect()
}

/// `createVault` input.
#[derive(InputObject)]
pub struct CreateVaultInput {
    name: String,
    /// The scheme: `secp256k1`, `secp256r1`, `ed25519` or `bip340`.
    curve: String,
    threshold: i32,
    /// Ordered: position = share index.
    signers: Vec<SignerInput>,
}

/// `requestSignature` input: exactly one of `digest`, `ethTx`, `message` (hex).
#[derive(InputObject)]
pub struct RequestSignatureInput {
    vault_id: ID,
    /// 32 bytes.
    digest: Option<String>,
    /// Unsigned EIP-1559 transaction `0x02 ‖ rlp(…)` (secp256k1).
    eth_tx: Option<String>,
    /// Message bytes: EIP-191 personal message on secp256k1, SHA-256 prehash on
    /// secp256r1, signed as they are on ed25519 and bip340.
    message: Option<String>,
    /// Non-hardened path `m/0/1` of a child key (secp256k1, secp256r1, ed25519).
    derivation_path: Option<String>,
    /// bip340: sign for the vault's BIP-341 Taproot output key instead of the vault key.
    #[graphql(default)]
    taproot: bool,
    /// bip340: the Taproot script tree's Merkle root, 32 bytes hex (implies `taproot`).
    taproot_merkle_root: Option<String>,
}

/// `requestReshare` input.
#[derive(InputObject)]
pub struct RequestReshareInput {
    vault_id: ID,
    new_threshold: i32,
    new_signers: Vec<SignerInput>,
}

/// New API client credentials; the secret is shown only in this response.
#[derive(SimpleObject)]
pub struct ApiClientCredentials {
    client_id: ID,
    /// `operator` | `signer`.
    role: String,
    /// Shown once; only its Argon2id hash is stored. Null when an idempotent replay
    /// returns an existing client (the secret cannot be shown again).
    client_secret: Option<String>,
}

/// Mutations: what operators request and what devices do.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(OperatorMutation, DeviceMutation);

/// The operators' requests.
#[derive(Default)]
pub struct OperatorMutation;

#[Object]
impl OperatorMutation {
    /// Creates another API client of the caller's organisation (operators), e.g. one
    /// signer client per Virtual Signer instance.
    async fn create_api_client(
        &self,
        ctx: &Context<'_>,
        role: String,
        idempotency_key: Option<String>,
    ) -> GqlResult<ApiClientCredentials> {
        let p = ctx_principal(ctx)?;
        let (client, secret) = ctx_service(ctx)?
            .create_api_client(p, &role, idempotency_key.as_deref())
            .await
            .map_err(gql)?;
        Ok(ApiClientCredentials {
            client_id: ID(client.id.to_string()),
            role: client.role.as_str().to_owned(),
            client_secret: secret.map(|s| s.expose().to_owned()),
        })
    }

    /// Gives an API client a new secret, shown only in this response (operators, or the
    /// client itself). The previous secret stays accepted for `overlapSeconds` (0 to 30
    /// days; default: the coordinator's `--client-secret-overlap-secs`), then is refused.
    async fn rotate_api_client_secret(
        &self,
        ctx: &Context<'_>,
        client_id: ID,
        overlap_seconds: Option<i32>,
    ) -> GqlResult<ApiClientCredentials> {
        let p = ctx_principal(ctx)?;
        let (client, secret, _) = ctx_service(ctx)?
            .rotate_api_client_secret(p, &client_id, overlap_seconds.map(i64::from))
            .await
            .map_err(gql)?;
        Ok(ApiClientCredentials {
            client_id: ID(client.id.to_string()),
            role: client.role.as_str().to_owned(),
            client_secret: Some(secret.expose().to_owned()),
        })
    }

    /// Revokes an API client (operators): its secrets and access tokens are refused from
    /// now on. The organisation's last operator client cannot be revoked.
    async fn revoke_api_client(&self, ctx: &Context<'_>, client_id: ID) -> GqlResult<ApiClientObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .revoke_api_client(p, &client_id)
            .await
            .map(ApiClientObj::from)
            .map_err(gql)
    }

    /// Delivers a person's answer to a human-approved device's request (operators; the
    /// console): `verdict` `approve` | `reject`, and the WebAuthn assertion
    /// (`PublicKeyCredential.toJSON()`) whose challenge is the hash of the verdict and the
    /// request. The device is notified and checks the assertion itself.
    async fn answer_as_person(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        verdict: String,
        assertion: String,
    ) -> GqlResult<HumanAnswerObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .answer_as_person(p, &operation_id, &device_id, &verdict, &assertion)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    /// Creates a web console user with a generated password, returned only here
    /// (operator API clients and console admins). `role`: `viewer` (reads), `approver`
    /// (reads, answers human approvals), `operator` (reads, requests operations), `admin`
    /// (an operator who also manages users and API clients).
    async fn create_console_user(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: String,
    ) -> GqlResult<ConsoleUserCreated> {
        let p = ctx_principal(ctx)?;
        let (user, password) = ctx_service(ctx)?
            .create_console_user(p, &name, &role)
            .await
            .map_err(gql)?;
        Ok(ConsoleUserCreated {
            user: user.into(),
            password: password.expose().to_owned(),
        })
    }

    /// Revokes a web console user: it can no longer sign in, and its sessions end at once
    /// (operator API clients and console admins).
    async fn revoke_console_user(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ConsoleUserObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .revoke_console_user(p, &id)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    /// Gives a web console user a new generated password, returned only here, and ends its
    /// sessions (operator API clients and console admins): for a person who forgot theirs.
    async fn reset_console_password(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ConsoleUserCreated> {
        let p = ctx_principal(ctx)?;
        let (user, password) = ctx_service(ctx)?
            .reset_console_password(p, &id)
            .await
            .map_err(gql)?;
        Ok(ConsoleUserCreated {
            user: user.into(),
            password: password.expose().to_owned(),
        })
    }

    /// Creates a vault (Pending) and returns its Keygen operation (operators).
    async fn create_vault(
        &self,
        ctx: &Context<'_>,
        input: CreateVaultInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let input = service::CreateVault {
            name: input.name,
            curve: input.curve,
            threshold: i64::from(input.threshold),
            signers: signer_inputs(input.signers),
        };
        ctx_service(ctx)?
            .create_vault(p, input, idempotency_key.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Requests a signature (operators).
    async fn request_signature(
        &self,
        ctx: &Context<'_>,
        input: RequestSignatureInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let input = service::RequestSignature {
            vault_id: input.vault_id.0,
            digest: input.digest,
            eth_tx: input.eth_tx,
            message: input.message,
            derivation_path: input.derivation_path,
            taproot: input.taproot,
            taproot_merkle_root: input.taproot_merkle_root,
        };
        ctx_service(ctx)?
            .request_signature(p, input, idempotency_key.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Requests `count` (1-100) presignatures of an ECDSA vault (secp256k1, secp256r1) by
    /// `committee` (exactly the threshold of current signers), Ready at once (operators, or a signer client
    /// that registered a committee member). A later signature of an `eth_tx` or `message`
    /// at the root key by the same committee uses one in a single online round.
    async fn request_presignatures(
        &self,
        ctx: &Context<'_>,
        vault_id: ID,
        committee: Vec<ID>,
        count: i32,
    ) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        let committee: Vec<String> = committee.into_iter().map(|d| d.0).collect();
        ctx_service(ctx)?
            .request_presignatures(p, &vault_id, &committee, count)
            .await
            .map(|ops| ops.into_iter().map(OperationObj).collect())
            .map_err(gql)
    }

    /// Requests a reshare to a new signer set/threshold (operators).
    async fn request_reshare(
        &self,
        ctx: &Context<'_>,
        input: RequestReshareInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let input = service::RequestReshare {
            vault_id: input.vault_id.0,
            new_threshold: i64::from(input.new_threshold),
            new_signers: signer_inputs(input.new_signers),
        };
        ctx_service(ctx)?
            .request_reshare(p, input, idempotency_key.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }
}
