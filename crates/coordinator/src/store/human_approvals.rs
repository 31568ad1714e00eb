//! Rows of human approvals: the requests human-approved devices post, and people's answers.

use sqlx::{AnyConnection, Row};

use super::Store;
use crate::domain::human_approval::{HumanAnswer, HumanApprovalRequest, Verdict};
use crate::domain::*;
use crate::error::{Error, Result};

impl Store {
    /// Stores (or replaces) what `device` asks people about `op`. A replaced request keeps
    /// its answers: each names the bytes it signed, and the device checks them.
    #[allow(clippy::too_many_arguments)] // one column each
    pub async fn put_human_request(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        op: &OperationId,
        device: &DeviceId,
        request: &str,
        credential_ids: &[String],
        now: Millis,
    ) -> Result<()> {
        let ids = serde_json::to_string(credential_ids).map_err(|e| Error::internal("credential ids", e))?;
        sqlx::query(
            "INSERT INTO human_approval_requests (operation_id, device_id, org_id, request, credential_ids, posted_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (operation_id, device_id) DO UPDATE SET request = excluded.request, \
             credential_ids = excluded.credential_ids, posted_at = excluded.posted_at \
             WHERE human_approval_requests.request <> excluded.request \
             OR human_approval_requests.credential_ids <> excluded.credential_ids",
        )
        .bind(op.as_str())
        .bind(device.as_str())
        .bind(org.as_str())
        .bind(request)
        .bind(ids)
        .bind(now)
        .execute(c)
        .await?;
        Ok(())
    }

    /// [`Store::human_requests`] on a connection of the pool.
    pub async fn read_human_requests(
        &self,
        org: &OrgId,
        op: &OperationId,
        device: Option<&DeviceId>,
    ) -> Result<Vec<HumanApprovalRequest>> {
        let mut c = self.reads.acquire().await?;
        self.human_requests(&mut c, org, op, device).await
    }

    /// The human-approval requests of an operation (of one device, or all), with answers.
    pub async fn human_requests(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        op: &OperationId,
        device: Option<&DeviceId>,
    ) -> Result<Vec<HumanApprovalRequest>> {
        let rows = sqlx::query(
            "SELECT device_id, request, credential_ids, posted_at FROM human_approval_requests \
             WHERE org_id = $1 AND operation_id = $2 AND ($3 = '' OR device_id = $3) ORDER BY device_id",
        )
        .bind(org.as_str())
        .bind(op.as_str())
        .bind(device.map(DeviceId::as_str).unwrap_or_default())
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(HumanApprovalRequest {
                operation_id: op.clone(),
                device_id: DeviceId::from_string(r.try_get::<String, _>("device_id")?),
                request: r.try_get("request")?,
                credential_ids: serde_json::from_str(&r.try_get::<String, _>("credential_ids")?)
                    .map_err(|e| Error::internal("credential ids", e))?,
                posted_at: r.try_get("posted_at")?,
                answers: Vec::new(),
            });
        }
        let answers = sqlx::query(
            "SELECT device_id, seq, verdict, credential_id, assertion, answered_by, at FROM human_answers \
             WHERE org_id = $1 AND operation_id = $2 AND ($3 = '' OR device_id = $3) ORDER BY device_id, seq",
        )
        .bind(org.as_str())
        .bind(op.as_str())
        .bind(device.map(DeviceId::as_str).unwrap_or_default())
        .fetch_all(&mut *c)
        .await?;
        for r in answers {
            let device_id: String = r.try_get("device_id")?;
            let answer = HumanAnswer {
                seq: r.try_get("seq")?,
                verdict: Verdict::parse(&r.try_get::<String, _>("verdict")?)?,
                credential_id: r.try_get("credential_id")?,
                assertion: r.try_get("assertion")?,
                answered_by: ClientId::from_string(r.try_get::<String, _>("answered_by")?),
                at: r.try_get("at")?,
            };
            if let Some(req) = out.iter_mut().find(|q| q.device_id.as_str() == device_id) {
                req.answers.push(answer);
            }
        }
        Ok(out)
    }

    /// Stores an answer to `device`'s request about `op` (which must exist) as number
    /// `seq` (one more than the last), in place of any earlier answer by the same passkey.
    pub async fn put_human_answer(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        op: &OperationId,
        device: &DeviceId,
        answer: &HumanAnswer,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM human_answers WHERE org_id = $1 AND operation_id = $2 AND device_id = $3 AND credential_id = $4",
        )
        .bind(org.as_str())
        .bind(op.as_str())
        .bind(device.as_str())
        .bind(&answer.credential_id)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "INSERT INTO human_answers (operation_id, device_id, seq, org_id, verdict, credential_id, assertion, answered_by, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(op.as_str())
        .bind(device.as_str())
        .bind(answer.seq)
        .bind(org.as_str())
        .bind(answer.verdict.as_str())
        .bind(&answer.credential_id)
        .bind(&answer.assertion)
        .bind(answer.answered_by.as_str())
        .bind(answer.at)
        .execute(c)
        .await?;
        Ok(())
    }
}
