//! Plugins in the PostgreSQL store: the binary as `BYTEA`, the exports as comma-separated
//! text, as on SQLite.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, Result};
use crate::id::PluginId;
use crate::store::{ACTION_INQUIRY, PluginQuota, PluginRecord, PluginUsage};

const COLUMNS: &str = "id, partner_id, name, sha256, size, exports, created_at, version";

/// What [`PgStore::plugin_usage`] reads.
const USAGE: &str = "SELECT COUNT(*), COALESCE(SUM(size), 0)::BIGINT FROM plugins WHERE partner_id = $1";

fn record(row: &PgRow) -> PluginRecord {
    PluginRecord {
        id: row.get::<String, _>(0).into(),
        partner_id: row.get::<String, _>(1).into(),
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

fn usage((plugins, bytes): (i64, i64)) -> PluginUsage {
    PluginUsage {
        plugins: plugins.max(0) as u64,
        bytes: bytes.max(0) as u64,
    }
}

impl PgStore {
    /// Stores an uploaded, validated plugin if the partner's plugins stay within `quota` with
    /// it ([`PluginQuota::admits`]); otherwise stores nothing and answers what they use now.
    ///
    /// Uploads may run at once in several processes, and under PostgreSQL's read committed
    /// isolation two of them would each count the plugins without the other's and both slip
    /// under the quota. So the transaction first locks the partner's row: uploads for one
    /// partner take turns, and each counts what the previous ones committed. `FOR NO KEY
    /// UPDATE` rather than `FOR UPDATE`, so that the foreign key checks of accepts for the
    /// partner (which share-lock the same row) do not wait for an upload. The same turns give
    /// each upload of a name the next version.
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
        let mut tx = self.pool.begin().await?;
        // Without such a partner no row is locked, and the insert below fails on the foreign
        // key, as on SQLite.
        sqlx::query("SELECT 1 FROM partners WHERE id = $1 FOR NO KEY UPDATE")
            .bind(partner_id)
            .execute(&mut *tx)
            .await?;
        let used = usage(sqlx::query_as(USAGE).bind(partner_id).fetch_one(&mut *tx).await?);
        if !quota.admits(used, wasm.len() as u64) {
            return Ok(Err(used));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO plugins (id, partner_id, name, sha256, size, exports, wasm, created_at, version)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                    (SELECT COALESCE(MAX(version), 0) + 1 FROM plugins WHERE partner_id = $2 AND name = $3)
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
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(record(&row)))
    }

    /// How many plugins a partner keeps, and their binaries' bytes together.
    pub async fn plugin_usage(&self, partner_id: &str) -> Result<PluginUsage> {
        Ok(usage(
            sqlx::query_as(USAGE).bind(partner_id).fetch_one(&self.pool).await?,
        ))
    }

    /// A partner's plugins, newest first.
    pub async fn plugins(&self, partner_id: &str) -> Result<Vec<PluginRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE partner_id = $1 ORDER BY id DESC"
        ))
        .bind(partner_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// One of a partner's plugins.
    pub async fn plugin(&self, partner_id: &str, id: &str) -> Result<Option<PluginRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE partner_id = $1 AND id = $2"
        ))
        .bind(partner_id)
        .bind(id)
        .fetch_optional(&self.pool)
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
            "SELECT {COLUMNS} FROM plugins WHERE partner_id = $1 AND name = $2 AND ($3::BIGINT IS NULL OR version = $3)
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(partner_id)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(record))
    }

    /// A plugin's binary, by id (workers load plugins by the id the settings name).
    pub async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT wasm FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deletes one of a partner's plugins unless its settings name it or a running canary
    /// serves it: `Ok(Err(()))` when in use, `Ok(Ok(false))` when there is no such plugin.
    pub async fn delete_plugin(&self, partner_id: &str, id: &str) -> Result<std::result::Result<bool, ()>> {
        let mut tx = self.pool.begin().await?;
        let used: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM settings WHERE partner_id = $1 AND family = $3
                 AND (body::json ->> 'transform_plugin' = $2 OR body::json ->> 'classify_plugin' = $2)",
        )
        .bind(partner_id)
        .bind(id)
        .bind(ACTION_INQUIRY)
        .fetch_optional(&mut *tx)
        .await?;
        let canary: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM canaries WHERE partner_id = $1 AND plugin_id = $2 AND state = 'running'")
                .bind(partner_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if used.is_some() || canary.is_some() {
            return Ok(Err(()));
        }
        let deleted = sqlx::query("DELETE FROM plugins WHERE partner_id = $1 AND id = $2")
            .bind(partner_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(deleted > 0))
    }
}
