//! Partners' signing secrets: shown once, when created, and never by any GET.

mod common;

use axum::http::StatusCode;
use common::*;

/// The create answer holds the secret; the partner's own GET, with the operator token or the
/// partner's key, holds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_get_shows_a_secret() {
    let engine = Engine::start().await;
    let partner = engine.create_partner("shown-once").await;
    let key = engine.partner_key(&partner).await;
    let path = format!("/v1/partners/{}", partner.id);
    for answer in [engine.get(&path).await, engine.get_as(&key, &path).await] {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.json["id"], partner.id.as_str(), "{answer:?}");
        assert!(answer.json.get("secret").is_none(), "{answer:?}");
        let text = answer.json.to_string();
        assert!(!text.contains("whsec_"), "{text}");
        let body = partner.secret.strip_prefix("whsec_").expect("a whsec_ secret");
        assert!(!text.contains(body), "{text}");
    }
    engine.stop().await;
}
