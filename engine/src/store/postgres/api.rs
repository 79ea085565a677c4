//! The API's queries on PostgreSQL: partners, keys, settings, listings, retries and plugins.

use super::{PgStore, Result};
use crate::id::DeliveryId;
use crate::store::{
    ApiKey, Attempt, Deleted, Delivery, DeliveryFilter, KeyKind, Partner, PluginQuota, PluginRecord, PluginUsage,
    SettingsRecord,
};

#[allow(unused_variables, reason = "to be written")]
impl PgStore {
    pub async fn create_partner(&self, name: &str, seal: impl FnOnce(&str) -> String) -> Result<Partner> {
        todo!()
    }
    pub async fn partner_secrets(&self) -> Result<Vec<(crate::id::PartnerId, String)>> {
        todo!()
    }
    pub async fn rotate_secret(&self, partner_id: &str, stored: &str, previous_until: i64) -> Result<bool> {
        todo!()
    }
    pub async fn drop_previous_secrets(&self, now: i64) -> Result<u64> {
        todo!()
    }
    pub async fn set_partner_secret(&self, partner_id: &str, stored: &str) -> Result<()> {
        todo!()
    }
    pub async fn partner(&self, id: &str) -> Result<Option<Partner>> {
        todo!()
    }
    pub async fn partners(&self, before: Option<&str>, limit: i64) -> Result<Vec<Partner>> {
        todo!()
    }
    pub async fn set_partner_disabled(&self, id: &str, disabled: bool, now: i64) -> Result<Option<u64>> {
        todo!()
    }
    pub async fn delete_partner(&self, id: &str) -> Result<Option<Deleted>> {
        todo!()
    }
    pub async fn put_settings(&self, partner_id: &str, body: &str, now: i64) -> Result<i64> {
        todo!()
    }
    pub async fn settings(&self, partner_id: &str) -> Result<Option<SettingsRecord>> {
        todo!()
    }
    pub async fn enable(&self, partner_id: &str, now: i64) -> Result<u64> {
        todo!()
    }
    pub async fn delete_settings(&self, partner_id: &str, now: i64) -> Result<Option<u64>> {
        todo!()
    }
    pub async fn disable_endpoint(&self, partner_id: &str, reason: &str, now: i64) -> Result<Option<u64>> {
        todo!()
    }
    pub async fn deliveries(
        &self,
        partner_id: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        todo!()
    }
    pub async fn replay(
        &self,
        partner_id: &str,
        filter: &DeliveryFilter,
        after: Option<&str>,
        limit: i64,
        now: i64,
    ) -> Result<Vec<DeliveryId>> {
        todo!()
    }
    pub async fn delivery(&self, partner_id: &str, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        todo!()
    }
    pub async fn retry(&self, partner_id: &str, id: &str, now: i64) -> Result<Option<Delivery>> {
        todo!()
    }
    pub async fn create_key(&self, key: &ApiKey, hash: &str) -> Result<()> {
        todo!()
    }
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        todo!()
    }
    pub async fn keys(&self, kind: KeyKind, partner_id: Option<&str>) -> Result<Vec<ApiKey>> {
        todo!()
    }
    pub async fn revoke_key(&self, kind: KeyKind, partner_id: Option<&str>, id: &str, now: i64) -> Result<bool> {
        todo!()
    }
    pub async fn key_used(&self, id: &str, at: i64) -> Result<()> {
        todo!()
    }
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
        todo!()
    }
    pub async fn plugin_usage(&self, partner_id: &str) -> Result<PluginUsage> {
        todo!()
    }
    pub async fn plugins(&self, partner_id: &str) -> Result<Vec<PluginRecord>> {
        todo!()
    }
    pub async fn plugin(&self, partner_id: &str, id: &str) -> Result<Option<PluginRecord>> {
        todo!()
    }
    pub async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    pub async fn delete_plugin(&self, partner_id: &str, id: &str) -> Result<std::result::Result<bool, ()>> {
        todo!()
    }
}
