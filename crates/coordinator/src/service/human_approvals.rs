//! Human approvals: human-approved devices post what they ask people; operators' clients
//! (the console) deliver people's passkey answers; the devices read them back and check
//! them. The coordinator relays and bounds; it verifies nothing cryptographic, because
//! no device takes its word (domain::human_approval).

use super::Service;
use crate::domain::human_approval::{self, HumanAnswer, HumanApprovalRequest, Verdict};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

impl Service {
    /// A human-approved device shows people what it asks about an operation it may vote
    /// on, and names the passkeys whose answers it reads (its signer client; posting the
    /// same again changes nothing).
    pub async fn post_human_request(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        request: &str,
        credential_ids: &[String],
    ) -> Result<()> {
        let op_id = OperationId::from_string(op_id);
        human_approval::check_request(&op_id, request)?;
        human_approval::check_credential_ids(credential_ids)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let device = self.acting_device(&mut tx, p, device_id).await?;
        let (op, _) = self
            .store
            .operation(&mut tx, Some(&p.org_id), op_id.as_str(), false)
            .await?
            .ok_or_else(|| Error::not_found("operation", op_id.as_str()))?;
        if op.voter(&device.id).is_none() {
            return Err(Error::new(
                ErrorCode::NotAVoter,
                format!("device {device_id} does not vote on operation {op_id}"),
            ));
        }
        if op.state != OperationState::AwaitingApproval {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "operation {op_id} is {}, not awaiting approval",
                    op.state.as_str()
                ),
            ));
        }
        self.store
            .put_human_request(
                &mut tx,
                &p.org_id,
                &op_id,
                &device.id,
                request,
                credential_ids,
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// People's answers to what a device asked about an operation (its signer client).
    pub async fn human_answers(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
    ) -> Result<Vec<HumanAnswer>> {
        let mut tx = self.store.begin().await?;
        let device = self.acting_device(&mut tx, p, device_id).await?;
        let requests = self
            .store
            .human_requests(
                &mut tx,
                &p.org_id,
                &OperationId::from_string(op_id),
                Some(&device.id),
            )
            .await?;
        tx.commit().await?;
        Ok(requests.into_iter().next().map(|r| r.answers).unwrap_or_default())
    }

    /// What human-approved devices ask people about an operation, with the answers so far.
    pub async fn human_approvals(&self, p: &Principal, op_id: &str) -> Result<Vec<HumanApprovalRequest>> {
        self.store
            .read_human_requests(&p.org_id, &OperationId::from_string(op_id), None)
            .await
    }

    /// Delivers a person's answer (a WebAuthn assertion over the device's request and the
    /// verdict) to a device's request. Operators' clients only (the console). The device is
    /// told at once (an AwaitingApproval notification) and checks the answer itself.
    pub async fn answer_as_person(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        verdict: &str,
        assertion: &str,
    ) -> Result<HumanAnswer> {
        Self::require_operator(p)?;
        let verdict = Verdict::parse(verdict)?;
        let credential_id = human_approval::credential_id_of(assertion)?;
        let now = self.clock.now();
        let op_id = OperationId::from_string(op_id);
        let device = DeviceId::from_string(device_id);
        let mut tx = self.store.begin().await?;
        // The operation row is locked: answers to one operation are numbered one at a time.
        let (op, _) = self
            .store
            .operation(&mut tx, Some(&p.org_id), op_id.as_str(), true)
            .await?
            .ok_or_else(|| Error::not_found("operation", op_id.as_str()))?;
        if op.state != OperationState::AwaitingApproval {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "operation {op_id} is {}: answers are no longer taken",
                    op.state.as_str()
                ),
            ));
        }
        let request = self
            .store
            .human_requests(&mut tx, &p.org_id, &op_id, Some(&device))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::not_found(
                    "human approval request",
                    &format!("{device_id} of operation {op_id}"),
                )
            })?;
        // Only the passkeys the device reads: nobody fills its list with other answers.
        // Each keeps its latest answer, so the list never outgrows the device's passkeys.
        if !request.credential_ids.contains(&credential_id) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!("passkey {credential_id} is not one whose answers device {device_id} reads"),
            ));
        }
        let answer = HumanAnswer {
            seq: request.answers.iter().map(|a| a.seq).max().map_or(1, |s| s + 1),
            verdict,
            credential_id,
            assertion: assertion.to_owned(),
            answered_by: p.client_id.clone(),
            at: now,
        };
        self.store
            .put_human_answer(&mut tx, &p.org_id, &op_id, &device, &answer)
            .await?;
        let event = AuditEvent {
            event: "human_answer".into(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({
                "device": device_id,
                "verdict": verdict.as_str(),
                "credentialId": answer.credential_id,
                "seq": answer.seq,
                "assertion": answer.assertion,
            }),
        };
        self.store
            .audit(&mut tx, &p.org_id, "operation", op_id.as_str(), now, &[event])
            .await?;
        tx.commit().await?;
        self.announce(&op);
        if let Some(n) = &self.notifier {
            n.notify(&[device], &op_id, OperationState::AwaitingApproval);
        }
        Ok(answer)
    }
}
