//! The devices' own actions: registration, their signed records, and every action on an
//! operation (vote, start, results, failure reports), each carrying the device's signature.

use super::*;

/// `registerDevice` input.
#[derive(InputObject)]
pub struct RegisterDeviceInput {
    name: String,
    /// `virtual` (default) | `manual`.
    kind: Option<String>,
    /// Hex of a 32-byte Ed25519 public key.
    identity_signing_key: String,
    /// Hex of a 32-byte X25519 public key.
    identity_encryption_key: String,
}

/// The devices' actions.
#[derive(Default)]
pub struct DeviceMutation;

#[Object]
impl DeviceMutation {
    /// Registers a device (signer clients); the device can then be acted as only by this client.
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        input: RegisterDeviceInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<DeviceObj> {
        let p = ctx_principal(ctx)?;
        let input = service::RegisterDevice {
            name: input.name,
            kind: input.kind.unwrap_or_else(|| "virtual".to_owned()),
            identity_signing_key: input.identity_signing_key,
            identity_encryption_key: input.identity_encryption_key,
        };
        ctx_service(ctx)?
            .register_device(p, input, idempotency_key.as_deref())
            .await
            .map(DeviceObj)
            .map_err(gql)
    }

    /// Publishes a device's own signed record of its keys (the signer client that registered
    /// it). The record must verify under the device's signing key; a newer revision may
    /// rotate the encryption key.
    async fn publish_device_record(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        record: String,
    ) -> GqlResult<DeviceObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .publish_device_record(p, &device_id.0, &record)
            .await
            .map(DeviceObj)
            .map_err(gql)
    }

    /// A human-approved device shows people the exact request they answer (the JSON a
    /// webhook would receive), for an operation awaiting its vote, and names the passkeys
    /// (credential ids, base64url) whose answers it reads: answers by others are refused.
    /// Posting it again is harmless. People answer with `answerAsPerson`; the device reads
    /// `humanAnswers`.
    async fn post_human_approval_request(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        credential_ids: Vec<String>,
        request: String,
    ) -> GqlResult<bool> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .post_human_request(p, &operation_id, &device_id, &request, &credential_ids)
            .await
            .map(|()| true)
            .map_err(gql)
    }

    /// A device's vote: `approve` | `reject` | `abstain` (once per device).
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    async fn vote(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        vote: String,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .vote(p, &operation_id, &device_id, &vote, device_signature.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A committee member reports that it started the protocol (Ready → InProgress).
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    async fn start_operation(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .start_operation(p, &operation_id, &device_id, device_signature.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Keygen result of one committee member (chain code required for secp256k1,
    /// secp256r1 and ed25519). `keySetHash` (hex, 32 bytes): SHA-256 over the
    /// concatenation, in share-index order, of every party's public key share in compressed
    /// encoding (secp256k1, secp256r1, bip340: 33-byte SEC1 compressed; ed25519: 32 bytes);
    /// all members must agree on it.
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    #[allow(clippy::too_many_arguments)] // one GraphQL argument each
    async fn submit_keygen_result(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        public_key: String,
        chain_code: Option<String>,
        key_set_hash: String,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_keygen_result(
                p,
                &operation_id,
                &device_id,
                &public_key,
                chain_code.as_deref(),
                &key_set_hash,
                device_signature.as_deref(),
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Reshare result of one new member: the (unchanged) public key and the key-set
    /// hash of the new shares (all new members must agree on it).
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    async fn submit_reshare_result(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        public_key: String,
        key_set_hash: String,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_reshare_result(
                p,
                &operation_id,
                &device_id,
                &public_key,
                &key_set_hash,
                device_signature.as_deref(),
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A presign committee member's result: the SHA-256 fingerprint (hex) of the
    /// presignature's public data; all members must agree on it.
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    async fn submit_presign_result(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        fingerprint: String,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_presign_result(
                p,
                &operation_id,
                &device_id,
                &fingerprint,
                device_signature.as_deref(),
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A device no longer holds its unconsumed presignatures (a signer keeps them in
    /// process memory only and says so at every start): each Completed, unconsumed
    /// presignature with it in the committee is marked discarded. Returns how many.
    ///
    /// `deviceSignature`: the device's signature over its `discard_presignatures`
    /// statement, whose operation id is the device id and whose content is `reason`.
    async fn discard_presignatures(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        reason: String,
        device_signature: Option<String>,
    ) -> GqlResult<i32> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .discard_presignatures(p, &device_id, &reason, device_signature.as_deref())
            .await
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .map_err(gql)
    }

    /// The signature (hex r‖s + recoveryId for secp256k1; 64-byte Ed25519), verified
    /// before acceptance. A bad one fails the operation and names the device.
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    async fn submit_signature(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        signature: String,
        recovery_id: Option<i32>,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_signature(
                p,
                &operation_id,
                &device_id,
                &signature,
                recovery_id.map(i64::from),
                device_signature.as_deref(),
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A committee member reports that the protocol failed, naming culprits.
    ///
    /// `deviceSignature`: the device's Ed25519 signature (hex) over its statement of this
    /// action (`vsigner-records`' `Statement`); an action without it is refused.
    async fn report_failure(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        reason: String,
        culprit_device_ids: Option<Vec<ID>>,
        device_signature: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let culprits = culprit_device_ids
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.0)
            .collect();
        ctx_service(ctx)?
            .report_failure(
                p,
                &operation_id,
                &device_id,
                &reason,
                culprits,
                device_signature.as_deref(),
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }
}
