//! Device rows.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::domain::*;
use crate::error::{Error, Result};
use vsigner_records::SignedDeviceRecord;

impl Store {
    /// Inserts a device.
    pub async fn insert_device(&self, c: &mut AnyConnection, d: &Device) -> Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, org_id, registered_by, name, kind, identity_signing_key, identity_encryption_key, status, created_at, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(d.id.as_str())
        .bind(d.org_id.as_str())
        .bind(d.registered_by.as_str())
        .bind(&d.name)
        .bind(d.kind.as_str())
        .bind(hex::encode(d.identity_signing_key))
        .bind(hex::encode(d.identity_encryption_key))
        .bind(d.status.as_str())
        .bind(d.created_at)
        .bind(d.record.as_ref().map(|r| r.to_hex()))
        .execute(c)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::new(
                crate::error::ErrorCode::DuplicateKey,
                "a device with this identitySigningKey or identityEncryptionKey is already registered",
            ),
            _ => Error::from(e),
        })?;
        Ok(())
    }

    pub(super) fn device_from_row(r: &AnyRow) -> Result<Device> {
        let key = |col: &str| -> Result<[u8; 32]> {
            let s: String = r.try_get(col)?;
            let v = hex::decode(s).map_err(|e| Error::internal("device key", e))?;
            <[u8; 32]>::try_from(v.as_slice()).map_err(|e| Error::internal("device key", e))
        };
        Ok(Device {
            id: DeviceId::from_string(r.try_get::<String, _>("id")?),
            org_id: OrgId::from_string(r.try_get::<String, _>("org_id")?),
            name: r.try_get("name")?,
            kind: DeviceKind::parse(&r.try_get::<String, _>("kind")?)?,
            identity_signing_key: key("identity_signing_key")?,
            identity_encryption_key: key("identity_encryption_key")?,
            status: DeviceStatus::parse(&r.try_get::<String, _>("status")?)?,
            registered_by: ClientId::from_string(r.try_get::<String, _>("registered_by")?),
            created_at: r.try_get("created_at")?,
            record: r
                .try_get::<Option<String>, _>("record")?
                .map(|h| SignedDeviceRecord::from_hex(&h).map_err(|e| Error::internal("device record", e)))
                .transpose()?,
        })
    }

    /// Stores a device's new record (and the encryption key it names), if the stored record
    /// is still `before` (a concurrent publication makes this one fail).
    pub async fn update_device_record(
        &self,
        c: &mut AnyConnection,
        d: &Device,
        before: Option<&SignedDeviceRecord>,
    ) -> Result<()> {
        let record = d.record.as_ref().map(|r| r.to_hex());
        let before = before.map(|r| r.to_hex());
        let done = sqlx::query(
            "UPDATE devices SET record = $1, identity_encryption_key = $2 \
             WHERE id = $3 AND org_id = $4 AND (record = $5 OR (record IS NULL AND $6))",
        )
        .bind(record)
        .bind(hex::encode(d.identity_encryption_key))
        .bind(d.id.as_str())
        .bind(d.org_id.as_str())
        .bind(before.clone().unwrap_or_default())
        .bind(before.is_none())
        .execute(c)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::new(
                crate::error::ErrorCode::DeviceRecordInvalid,
                format!(
                    "device {} published another record meanwhile; publish again",
                    d.id
                ),
            ));
        }
        Ok(())
    }

    /// A device of an organisation.
    pub async fn device(&self, c: &mut AnyConnection, org: &OrgId, id: &str) -> Result<Option<Device>> {
        let row = sqlx::query("SELECT * FROM devices WHERE id = $1 AND org_id = $2")
            .bind(id)
            .bind(org.as_str())
            .fetch_optional(c)
            .await?;
        row.as_ref().map(Self::device_from_row).transpose()
    }

    /// All devices of an organisation.
    pub async fn devices(&self, org: &OrgId) -> Result<Vec<Device>> {
        let rows = sqlx::query("SELECT * FROM devices WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org.as_str())
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(Self::device_from_row).collect()
    }

    /// A device by id, outside a transaction.
    pub async fn device_by_id(&self, org: &OrgId, id: &str) -> Result<Option<Device>> {
        let mut c = self.reads.acquire().await?;
        self.device(&mut c, org, id).await
    }

    /// The devices of an organisation with these ids (one query; a committee is small),
    /// outside a transaction; unknown ids are absent.
    pub async fn devices_by_ids(&self, org: &OrgId, ids: &[&str]) -> Result<Vec<Device>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT * FROM devices WHERE org_id = $1 AND id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.as_str());
        for id in ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.reads).await?;
        rows.iter().map(Self::device_from_row).collect()
    }
}
