//! Partners' signing secrets: shown once, when created, and never by any GET; encrypted in the
//! database file with the configured key, without which the engine does not start.

mod common;

use std::path::Path;

use axum::http::StatusCode;
use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use postwire::serve::Running;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

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

/// The bytes of the database files (the main file, the WAL and its index) hold no signing
/// secret, neither whole nor its base64 body, once partners are created and postbacks sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_hold_no_secret() {
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let engine = Engine::start().await;
    let settings = simple_settings(&receiver.url("/pb"));
    let mut partners = Vec::new();
    for name in ["one", "two"] {
        let partner = engine.partner_with(name, &settings).await;
        let id = engine
            .send_event(&created(&partner, &format!("evt_{name}"), "inq-1"))
            .await;
        engine.wait_status(&partner, &id, "delivered").await;
        partners.push((partner, id));
    }
    let hits = receiver.wait_hits(2).await;
    for (partner, id) in &partners {
        let hit = hits.iter().find(|hit| hit.header("webhook-id") == Some(id.as_str()));
        assert_signed(hit.expect("its postback"), &partner.secret, id);
    }
    assert_no_secret_in_files(
        engine.database_dir(),
        &partners.iter().map(|(p, _)| p.secret.clone()).collect::<Vec<_>>(),
    );
    engine.stop().await;
}

/// Fails when a file of the database in `dir` holds one of `secrets` or its base64 body.
fn assert_no_secret_in_files(dir: &Path, secrets: &[String]) {
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir).expect("the database folder") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !name.starts_with("pw.db") || name.ends_with(".key") || path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("a database file");
        scanned += 1;
        assert!(!contains(&bytes, b"whsec_"), "{name} holds a whsec_ secret");
        for secret in secrets {
            let body = secret.strip_prefix("whsec_").expect("a whsec_ secret");
            assert!(!contains(&bytes, body.as_bytes()), "{name} holds a secret's body");
        }
    }
    assert!(scanned >= 2, "the main file and the WAL were scanned");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Starts an engine on the database in `dir` with `key` as its secret key (none: the key file).
async fn start_on(dir: &tempfile::TempDir, key: Option<&str>) -> Result<Running, String> {
    let mut options = Engine::options(dir);
    options.secret_key = key.map(str::to_owned);
    let config = options.resolve()?;
    postwire::serve::start(config, CancellationToken::new()).await
}

/// A database whose secrets were encrypted with one key does not start with another key, nor
/// without its key file: the error names the setting, and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_key_stops_the_start() {
    let key_a = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let key_b = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let running = start_on(&dir, Some(&key_a)).await.expect("the first start");
    running
        .store
        .create_partner("sealed", |s| s.to_owned())
        .await
        .expect("a partner");
    running.stop().await;
    // The secret stored in plain text (as before sealing) is sealed at the next start.
    let running = start_on(&dir, Some(&key_a)).await.expect("the same key starts");
    let stored = running.store.partner_secrets().await.expect("the secrets");
    assert!(stored.iter().all(|(_, s)| s.starts_with("enc:v1:")), "{stored:?}");
    running.stop().await;

    let error = start_on(&dir, Some(&key_b))
        .await
        .err()
        .expect("another key does not start");
    assert!(error.starts_with("secret_key:"), "{error}");

    // Without a configured key, the key file made on that start is not the key either.
    let error = start_on(&dir, None).await.err().expect("a missing key does not start");
    assert!(error.starts_with("secret_key:"), "{error}");
    assert!(dir.path().join("pw.db.key").exists(), "the key file was made");
    let running = start_on(&dir, Some(&key_a)).await.expect("the right key still starts");
    running.stop().await;
}

/// The signatures of `webhook-signature`, each checked here with a plain HMAC-SHA256 of
/// `id.timestamp.body`: which of `secrets` each one verifies with.
fn verifying_secrets(hit: &Hit, secrets: &[&str]) -> Vec<Vec<usize>> {
    let header = |name| hit.header(name).unwrap_or_else(|| panic!("{name} is missing"));
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    header("webhook-signature")
        .split(' ')
        .map(|signature| {
            let signature = signature.strip_prefix("v1,").expect("a v1 signature");
            let signature = base64::engine::general_purpose::STANDARD
                .decode(signature)
                .expect("base64");
            (0..secrets.len())
                .filter(|&i| {
                    let key = base64::engine::general_purpose::STANDARD
                        .decode(secrets[i].strip_prefix("whsec_").expect("a whsec_ secret"))
                        .expect("base64");
                    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
                    mac.update(format!("{id}.{timestamp}.").as_bytes());
                    mac.update(hit.body.as_bytes());
                    mac.verify_slice(&signature).is_ok()
                })
                .collect()
        })
        .collect()
}

/// After a rotation, postbacks carry the new secret's signature and the old one's, space
/// separated, until the grace period ends; then only the new one's. The new secret is shown in
/// the rotation's answer and nowhere after; the database files hold neither secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_during_the_grace_period() {
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let engine = Engine::start().await;
    let partner = engine
        .partner_with("rotating", &simple_settings(&receiver.url("/pb")))
        .await;
    let key = engine.partner_key(&partner).await;
    let old = partner.secret.clone();

    let answer = engine
        .post_as(
            &key,
            &format!("/v1/partners/{}/secret/rotate", partner.id),
            &serde_json::json!({"grace_secs": 2}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let new = answer.json["secret"].as_str().expect("the new secret").to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{answer:?}");
    let until = answer.json["previous_secret_expires_at"]
        .as_i64()
        .expect("when the old one stops");
    let shown = engine.get(&format!("/v1/partners/{}", partner.id)).await;
    assert!(!shown.json.to_string().contains("whsec_"), "{shown:?}");

    let during = engine.send_event(&created(&partner, "evt_during", "inq-1")).await;
    engine.wait_status(&partner, &during, "delivered").await;
    let hit = receiver.wait_hits(1).await.remove(0);
    assert!(
        postwire::store::now_ms() < until,
        "the postback came within the grace period"
    );
    assert_eq!(
        verifying_secrets(&hit, &[&new, &old]),
        vec![vec![0], vec![1]],
        "{hit:?}"
    );

    // Past the grace period: only the new secret's signature.
    tokio::time::sleep(std::time::Duration::from_millis(
        (until - postwire::store::now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let after = engine.send_event(&created(&partner, "evt_after", "inq-2")).await;
    engine.wait_status(&partner, &after, "delivered").await;
    let hit = receiver.wait_hits(2).await.remove(1);
    assert_eq!(hit.header("webhook-id"), Some(after.as_str()));
    assert_eq!(verifying_secrets(&hit, &[&new, &old]), vec![vec![0]], "{hit:?}");
    assert_signed(&hit, &new, &after);

    // A rotation with no grace stops the old secret at once; the operator may rotate too.
    let answer = engine
        .post(
            &format!("/v1/partners/{}/secret/rotate", partner.id),
            &serde_json::json!({"grace_secs": 0}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let newest = answer.json["secret"].as_str().expect("the newest secret").to_owned();
    let last = engine.send_event(&created(&partner, "evt_last", "inq-3")).await;
    engine.wait_status(&partner, &last, "delivered").await;
    let hit = receiver.wait_hits(3).await.remove(2);
    assert_eq!(
        verifying_secrets(&hit, &[&newest, &new, &old]),
        vec![vec![0]],
        "{hit:?}"
    );

    let bad = engine
        .post(
            &format!("/v1/partners/{}/secret/rotate", partner.id),
            &serde_json::json!({"grace_secs": -1}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");

    assert_no_secret_in_files(engine.database_dir(), &[old, new, newest]);
    engine.stop().await;
}
