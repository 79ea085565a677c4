//! Plugins in the SQLite store, through sqlx.

use sqlx::Row;

use super::{Result, SqliteStore};
use crate::id::PluginId;
use crate::store::{ACTION_INQUIRY, PluginQuota, PluginRecord, PluginUsage};

const COLUMNS: &str = "id, partner_id, name, sha256, size, exports, created_at, version";

fn record(row: &sqlx::sqlite::SqliteRow) -> PluginRecord {
    PluginRecord {
        id: row.get(0),
        partner_id: row.get(1),
        name: row.get(2),
        sha256: row.get(3),
        size: row.get(4),
        exports: row
            .get::<String, _>(5)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.get(6),
        version: row.get(7),
    }
}

impl SqliteStore {
    /// Stores an uploaded, validated plugin if the partner's plugins stay within `quota` with
    /// it; otherwise stores nothing and answers what they use now. The check, the version (one
    /// more than the name's latest) and the insert are one statement, so uploads racing each
    /// other can neither both slip under the quota nor take the same version.
    #[allow(
        clippy::too_many_arguments,
        reason = "the columns of one row, and the quota it must fit"
    )]
    pub async fn create_plugin(
        &self,
        partner_id: &str,
        name: &str,
        sha256: &str,
        exports: &[&str],
        wasm: &[u8],
        now: i64,
        quota: PluginQuota,
    ) -> Result<std::result::Result<PluginRecord, PluginUsage>> {
        let row = sqlx::query(&format!(
            "INSERT INTO plugins (id, partner_id, name, sha256, size, exports, wasm, created_at, version)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                    (SELECT COALESCE(MAX(version), 0) + 1 FROM plugins WHERE partner_id = ?2 AND name = ?3)
              WHERE (SELECT COUNT(*) FROM plugins WHERE partner_id = ?2) < ?9
                AND (SELECT COALESCE(SUM(size), 0) FROM plugins WHERE partner_id = ?2) + ?5 <= ?10
             RETURNING {COLUMNS}"
        ))
        .bind(PluginId::generate().into_string())
        .bind(partner_id)
        .bind(name)
        .bind(sha256)
        .bind(wasm.len() as i64)
        .bind(exports.join(","))
        .bind(wasm)
        .bind(now)
        .bind(i64::try_from(quota.plugins).unwrap_or(i64::MAX))
        .bind(i64::try_from(quota.bytes).unwrap_or(i64::MAX))
        .fetch_optional(&self.write)
        .await?;
        match row {
            Some(row) => Ok(Ok(record(&row))),
            None => Ok(Err(self.plugin_usage(partner_id).await?)),
        }
    }

    /// How many plugins a partner keeps, and their binaries' bytes together.
    pub async fn plugin_usage(&self, partner_id: &str) -> Result<PluginUsage> {
        let (plugins, bytes): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM plugins WHERE partner_id = ?1")
                .bind(partner_id)
                .fetch_one(&self.read)
                .await?;
        Ok(PluginUsage {
            plugins: plugins.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    /// A partner's plugins, newest first.
    pub async fn plugins(&self, partner_id: &str) -> Result<Vec<PluginRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE partner_id = ?1 ORDER BY id DESC"
        ))
        .bind(partner_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// One of a partner's plugins.
    pub async fn plugin(&self, partner_id: &str, id: &str) -> Result<Option<PluginRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE partner_id = ?1 AND id = ?2"
        ))
        .bind(partner_id)
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(record))
    }

    /// A partner's plugin by name: `version`, or the latest without one.
    pub async fn plugin_named(
        &self,
        partner_id: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<PluginRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE partner_id = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(partner_id)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(record))
    }

    /// A plugin's binary, by id (workers load plugins by the id the settings name).
    pub async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT wasm FROM plugins WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.write)
            .await?)
    }

    /// Deletes a plugin unless settings name it or a running canary serves it: `Ok(Err(()))`
    /// when in use, `Ok(Ok(false))` when there is no such plugin.
    pub async fn delete_plugin(&self, partner_id: &str, id: &str) -> Result<std::result::Result<bool, ()>> {
        let mut tx = self.write.begin().await?;
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM settings WHERE partner_id = ?1 AND family = ?3
                 AND (json_extract(body, '$.transform_plugin') = ?2 OR json_extract(body, '$.classify_plugin') = ?2)",
        )
        .bind(partner_id)
        .bind(id)
        .bind(ACTION_INQUIRY)
        .fetch_optional(&mut *tx)
        .await?;
        let canary: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM canaries WHERE partner_id = ?1 AND plugin_id = ?2 AND state = 'running'")
                .bind(partner_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if used.is_some() || canary.is_some() {
            return Ok(Err(()));
        }
        let deleted = sqlx::query("DELETE FROM plugins WHERE partner_id = ?1 AND id = ?2")
            .bind(partner_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(deleted > 0))
    }
}
