//! API keys in the PostgreSQL store. Keys are looked up by their token's hash; an ingest key's
//! partners are a JSON array in text, as on SQLite.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, Result};
use crate::id::PartnerId;
use crate::store::{ApiKey, KeyKind, StoreError};

const COLUMNS: &str = "id, kind, partner_id, partners, prefix, created_at, revoked_at, last_used_at";

fn key(row: &PgRow) -> Result<ApiKey> {
    let kind: String = row.get(1);
    let partners: Option<String> = row.get(3);
    Ok(ApiKey {
        id: row.get::<String, _>(0).into(),
        kind: KeyKind::parse(&kind).ok_or_else(|| StoreError::backend("unknown key kind", kind))?,
        partner_id: row.get::<Option<String>, _>(2).map(PartnerId::from),
        partners: partners
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| StoreError::backend("unreadable key partners", e))?,
        prefix: row.get(4),
        created_at: row.get(5),
        revoked_at: row.get(6),
        last_used_at: row.get(7),
    })
}

impl PgStore {
    /// Stores a new key by its token's hash; the token itself is never stored.
    pub async fn create_key(&self, key: &ApiKey, hash: &str) -> Result<()> {
        let partners = key
            .partners
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("ids serialize"));
        sqlx::query(
            "INSERT INTO api_keys (id, kind, partner_id, partners, prefix, hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.as_str())
        .bind(key.kind.as_str())
        .bind(key.partner_id.as_deref())
        .bind(partners)
        .bind(&key.prefix)
        .bind(hash)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The key whose token hashes to `hash`, revoked or not.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key).transpose()
    }

    /// Keys of `kind` (of one partner when given), revoked ones too, newest first.
    pub async fn keys(&self, kind: KeyKind, partner_id: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE kind = $1 AND ($2::text IS NULL OR partner_id = $2) ORDER BY id DESC"
        ))
        .bind(kind.as_str())
        .bind(partner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key).collect()
    }

    /// Revokes a key of `kind` (of one partner when given); false when there is no such key
    /// not yet revoked.
    pub async fn revoke_key(&self, kind: KeyKind, partner_id: Option<&str>, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $4
             WHERE id = $3 AND kind = $1 AND ($2::text IS NULL OR partner_id = $2) AND revoked_at IS NULL",
        )
        .bind(kind.as_str())
        .bind(partner_id)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that a key was used at `at`; a write that arrives late never moves the last use
    /// back.
    pub async fn key_used(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $2) WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
