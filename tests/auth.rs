//! Who may call what: the tenant-isolation matrix over every route of the API, and where
//! tokens must never show up (the database file, the logs).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// The operator token.
    Operator,
    /// The partner's key, or the operator token.
    Partner,
    /// An ingest key, or the operator token.
    Ingest,
}

/// The routes anyone may call: the health probes and the API's OpenAPI document, which tell
/// nothing of any partner.
const PUBLIC: &[&str] = &["/health", "/healthz", "/readyz", "/openapi.json"];

#[tokio::test]
async fn the_health_probes_need_no_credential() {
    let engine = Engine::start().await;
    for path in PUBLIC {
        let answer = engine.raw_as(None, reqwest::Method::GET, path, None).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
    engine.stop().await;
}

/// Every route of the API but the [`PUBLIC`] ones: method, path template, what it needs. They
/// are called in this order, so a route that takes something away comes before the one that
/// gives it back (a deleted setting before the PUT, a disable before its enable), and deleting
/// the partner comes last.
const ROUTES: &[(&str, &str, Needs)] = &[
    ("POST", "/v1/partners", Needs::Operator),
    ("GET", "/v1/partners", Needs::Operator),
    ("GET", "/v1/partners/{partner_id}", Needs::Partner),
    ("POST", "/v1/partners/{partner_id}/secret/rotate", Needs::Partner),
    ("POST", "/v1/partners/{partner_id}/keys", Needs::Operator),
    ("GET", "/v1/partners/{partner_id}/keys", Needs::Operator),
    ("DELETE", "/v1/partners/{partner_id}/keys/{key_id}", Needs::Operator),
    ("POST", "/v1/ingest-keys", Needs::Operator),
    ("GET", "/v1/ingest-keys", Needs::Operator),
    ("DELETE", "/v1/ingest-keys/{key_id}", Needs::Operator),
    // Anyone's only with `--metrics-public` (tests/metrics.rs).
    ("GET", "/metrics", Needs::Operator),
    ("POST", "/v1/events", Needs::Ingest),
    ("POST", "/v1/events/batch", Needs::Ingest),
    (
        "GET",
        "/v1/partners/{partner_id}/settings/action-inquiry",
        Needs::Partner,
    ),
    (
        "DELETE",
        "/v1/partners/{partner_id}/settings/action-inquiry",
        Needs::Partner,
    ),
    (
        "PUT",
        "/v1/partners/{partner_id}/settings/action-inquiry",
        Needs::Partner,
    ),
    (
        "POST",
        "/v1/partners/{partner_id}/settings/action-inquiry/disable",
        Needs::Partner,
    ),
    (
        "POST",
        "/v1/partners/{partner_id}/settings/action-inquiry/enable",
        Needs::Partner,
    ),
    (
        "POST",
        "/v1/partners/{partner_id}/settings/action-inquiry/preview",
        Needs::Partner,
    ),
    (
        "POST",
        "/v1/partners/{partner_id}/settings/action-inquiry/test",
        Needs::Partner,
    ),
    ("GET", "/v1/partners/{partner_id}/deliveries", Needs::Partner),
    (
        "GET",
        "/v1/partners/{partner_id}/deliveries/{delivery_id}",
        Needs::Partner,
    ),
    (
        "POST",
        "/v1/partners/{partner_id}/deliveries/{delivery_id}/retry",
        Needs::Partner,
    ),
    ("POST", "/v1/partners/{partner_id}/deliveries/replay", Needs::Partner),
    ("POST", "/v1/partners/{partner_id}/plugins", Needs::Partner),
    ("GET", "/v1/partners/{partner_id}/plugins", Needs::Partner),
    ("GET", "/v1/partners/{partner_id}/plugins/{plugin_id}", Needs::Partner),
    (
        "POST",
        "/v1/partners/{partner_id}/plugins/{plugin_id}/run",
        Needs::Partner,
    ),
    (
        "DELETE",
        "/v1/partners/{partner_id}/plugins/{plugin_id}",
        Needs::Partner,
    ),
    ("POST", "/v1/partners/{partner_id}/plugins/diff", Needs::Partner),
    (
        "POST",
        "/v1/partners/{partner_id}/settings/action-inquiry/rollback",
        Needs::Partner,
    ),
    (
        "PUT",
        "/v1/partners/{partner_id}/settings/action-inquiry/canary",
        Needs::Partner,
    ),
    (
        "GET",
        "/v1/partners/{partner_id}/settings/action-inquiry/canary",
        Needs::Partner,
    ),
    (
        "DELETE",
        "/v1/partners/{partner_id}/settings/action-inquiry/canary",
        Needs::Partner,
    ),
    (
        "POST",
        "/v1/partners/{partner_id}/settings/action-inquiry/canary/promote",
        Needs::Partner,
    ),
    ("POST", "/v1/partners/{partner_id}/disable", Needs::Operator),
    ("POST", "/v1/partners/{partner_id}/enable", Needs::Operator),
    ("DELETE", "/v1/partners/{partner_id}", Needs::Operator),
];

#[test]
fn the_matrix_holds_every_route() {
    let mut declared = common::routes::declared_routes();
    for public in PUBLIC {
        assert!(
            declared.remove(&("GET".to_owned(), (*public).to_owned())),
            "GET {public} in {declared:?}"
        );
    }
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(
        declared, listed,
        "every route of the API is in ROUTES with what it needs, and nothing else"
    );
}

/// A route's path for `tenant`'s resources (`ingest_key` for the ingest-key routes), and a body.
fn request(template: &str, tenant: &Tenant, ingest_key: &str, n: usize) -> (String, Option<Vec<u8>>) {
    let path = template
        .replace("{partner_id}", &tenant.partner.id)
        .replace("{delivery_id}", &tenant.delivery_id)
        .replace("{plugin_id}", &tenant.plugin_id)
        .replace(
            "{key_id}",
            if template.starts_with("/v1/ingest-keys") {
                ingest_key
            } else {
                &tenant.key_id
            },
        );
    let event = created(&tenant.partner, &format!("evt_matrix_{n}"), &format!("inq-m{n}"));
    let body = match template {
        "/v1/events" => Some(event),
        "/v1/events/batch" => Some(json!({"events": [event]})),
        "/v1/partners/{partner_id}/settings/action-inquiry" => Some(simple_settings("http://127.0.0.1:9/pb")),
        "/v1/partners/{partner_id}/plugins/{plugin_id}/run" => Some(json!({})),
        // A small body: an answer sent before a large body is read can break the client's write.
        "/v1/partners/{partner_id}/plugins" => return (format!("{path}?name=again"), Some(b"\0asm".to_vec())),
        _ => Some(json!({})),
    };
    (path, body.map(|b| b.to_string().into_bytes()))
}

/// The id of the key of `token` in a listing, found by the prefix shown.
fn key_id(listing: &Answer, token: &str) -> String {
    let shown = &token[8..16];
    listing.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == shown)
        .unwrap_or_else(|| panic!("no key shown as {shown}: {listing:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What a credential gets on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(StatusCode),
    /// Anything but 401, 403 and 404: let in.
    LetIn,
}

fn check(answer: &Answer, expect: Expect, what: &str) {
    match expect {
        Expect::Status(status) => {
            assert_eq!(answer.status, status, "{what}: {answer:?}");
            assert_eq!(answer.content_type, "application/problem+json", "{what}");
        }
        Expect::LetIn => assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&answer.status),
            "{what}: {answer:?}"
        ),
    }
}

/// Captured log output of every engine in this test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buffer
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_lets_in_only_the_right_credential() {
    let logs = logs();
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let a = tenant(&engine, &receiver, "a").await;
    let b = tenant(&engine, &receiver, "b").await;
    let ingest_all = engine.ingest_key(None).await;
    let ingest_a = engine.ingest_key(Some(&[&a.partner])).await;
    let ingest_keys = engine.get("/v1/ingest-keys").await;
    let ingest_all_id = ingest_keys.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["partners"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Keys revoked at once.
    let revoked_partner = engine.partner_key(&a.partner).await;
    let revoked_ingest = engine.ingest_key(None).await;
    let listed = engine.get(&format!("/v1/partners/{}/keys", a.partner.id)).await;
    let newest = key_id(&listed, &revoked_partner);
    let gone = engine
        .raw(
            Method::DELETE,
            &format!("/v1/partners/{}/keys/{newest}", a.partner.id),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone:?}");
    let listed = engine.get("/v1/ingest-keys").await;
    let newest = key_id(&listed, &revoked_ingest);
    let gone = engine
        .raw(Method::DELETE, &format!("/v1/ingest-keys/{newest}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone:?}");

    let status = Expect::Status;
    let mut n = 0;
    let mut run = async |token: Option<&str>, tenant: &Tenant, expect: &dyn Fn(Needs) -> Expect, who: &str| {
        for (method, template, needs) in ROUTES {
            n += 1;
            let (path, body) = request(template, tenant, &ingest_all_id, n);
            let answer = engine.raw_as(token, method.parse().unwrap(), &path, body).await;
            let expected = expect(*needs);
            check(&answer, expected, &format!("{who}: {method} {path}"));
            if answer.status == StatusCode::UNAUTHORIZED {
                assert_eq!(answer.json["status"], 401);
            }
        }
    };
    // No credential, an unknown one, a malformed one, revoked keys: 401 everywhere.
    run(None, &b, &|_| status(StatusCode::UNAUTHORIZED), "no credential").await;
    run(
        Some("pw_live_unknown0000000000000000000000000000000"),
        &b,
        &|_| status(StatusCode::UNAUTHORIZED),
        "unknown",
    )
    .await;
    run(
        Some(&revoked_partner),
        &a,
        &|_| status(StatusCode::UNAUTHORIZED),
        "revoked partner key",
    )
    .await;
    run(
        Some(&revoked_ingest),
        &b,
        &|_| status(StatusCode::UNAUTHORIZED),
        "revoked ingest key",
    )
    .await;
    // Partner A's key on B's resources: B does not exist for it; operator routes are refused.
    run(
        Some(&a.key),
        &b,
        &|needs| match needs {
            Needs::Partner => status(StatusCode::NOT_FOUND),
            Needs::Operator | Needs::Ingest => status(StatusCode::FORBIDDEN),
        },
        "partner A's key on B",
    )
    .await;
    // Ingest keys read nothing; one limited to A posts nothing of B's.
    run(
        Some(&ingest_a),
        &b,
        &|_| status(StatusCode::FORBIDDEN),
        "A's ingest key on B",
    )
    .await;
    run(
        Some(&ingest_all),
        &b,
        &|needs| match needs {
            Needs::Ingest => Expect::LetIn,
            Needs::Operator | Needs::Partner => status(StatusCode::FORBIDDEN),
        },
        "an ingest key",
    )
    .await;
    // Partner A's key on A's resources: in, but never posting events or managing keys.
    run(
        Some(&a.key),
        &a,
        &|needs| match needs {
            Needs::Partner => Expect::LetIn,
            Needs::Operator | Needs::Ingest => status(StatusCode::FORBIDDEN),
        },
        "partner A's key on A",
    )
    .await;
    // The operator can do everything.
    run(Some(TOKEN), &b, &|_| Expect::LetIn, "the operator").await;

    // Nothing of B's in A's lists, and B looks to A exactly like no partner at all.
    for list in ["deliveries", "plugins"] {
        let answer = engine
            .get_as(&a.key, &format!("/v1/partners/{}/{list}", a.partner.id))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let text = answer.json.to_string();
        assert!(
            !text.contains(&b.partner.id) && !text.contains(&b.delivery_id) && !text.contains(&b.plugin_id),
            "{text}"
        );
    }
    let hidden = engine.get_as(&a.key, &format!("/v1/partners/{}", b.partner.id)).await;
    let missing = engine.get_as(&a.key, "/v1/partners/ptn_nope").await;
    assert_eq!(hidden.status, missing.status);
    assert_eq!(
        hidden.json["detail"]
            .as_str()
            .unwrap()
            .replace(&b.partner.id, "ptn_nope"),
        missing.json["detail"]
    );

    // A batch with an event the key may not post is refused whole, naming it.
    let before = engine.deliveries(&a.partner, None).await.len();
    let batch = engine
        .post_as(
            &ingest_a,
            "/v1/events/batch",
            &json!({"events": [created(&a.partner, "evt_ok", "inq-ok"), created(&b.partner, "evt_no", "inq-no")]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::FORBIDDEN, "{batch:?}");
    assert!(
        batch.json["detail"].as_str().unwrap().contains("events[1]"),
        "{batch:?}"
    );
    assert_eq!(
        engine.deliveries(&a.partner, None).await.len(),
        before,
        "nothing was accepted"
    );
    let one = engine
        .post_as(&ingest_a, "/v1/events", &created(&a.partner, "evt_ok", "inq-ok"))
        .await;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{one:?}");

    // A key in use stops working the moment it is revoked.
    let fresh = engine.partner_key(&a.partner).await;
    let own = format!("/v1/partners/{}", a.partner.id);
    assert_eq!(engine.get_as(&fresh, &own).await.status, StatusCode::OK);
    assert_eq!(engine.get_as(&fresh, &own).await.status, StatusCode::OK);
    let keys = engine.get(&format!("{own}/keys")).await;
    let fresh_id = key_id(&keys, &fresh);
    let gone = engine
        .raw(Method::DELETE, &format!("{own}/keys/{fresh_id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone:?}");
    assert_eq!(engine.get_as(&fresh, &own).await.status, StatusCode::UNAUTHORIZED);
    let again = engine
        .raw(Method::DELETE, &format!("{own}/keys/{fresh_id}"), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again:?}");
    let fresh = engine.ingest_key(None).await;
    let keys = engine.get("/v1/ingest-keys").await;
    let fresh_id = key_id(&keys, &fresh);
    let event = created(&a.partner, "evt_fresh", "inq-fresh");
    assert_eq!(
        engine.post_as(&fresh, "/v1/events", &event).await.status,
        StatusCode::ACCEPTED
    );
    let gone = engine
        .raw(Method::DELETE, &format!("/v1/ingest-keys/{fresh_id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone:?}");
    assert_eq!(
        engine.post_as(&fresh, "/v1/events", &event).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A 401 says how to authenticate.
    let answer = reqwest::Client::new()
        .get(format!("{}/v1/partners/{}", engine.base, a.partner.id))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers()["www-authenticate"], "Bearer");
    let basic = reqwest::Client::new()
        .get(format!("{}/v1/partners/{}", engine.base, a.partner.id))
        .header("authorization", format!("Basic {}", a.key))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        engine.raw_as(None, Method::GET, "/health", None).await.status,
        StatusCode::OK
    );

    // Listings show keys without tokens, with their last use.
    let keys = eventually("A's key's last use is recorded", async || {
        let keys = engine.get(&format!("/v1/partners/{}/keys", a.partner.id)).await.json;
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == a.key_id.as_str() && k["last_used_at"].is_i64())
            .then_some(keys)
    })
    .await;
    assert!(!keys.to_string().contains("pw_live_"), "{keys}");
    assert!(keys["keys"].as_array().unwrap().iter().all(|k| k["token"].is_null()));

    // No token in the database's files or the logs.
    let tokens = [
        &a.key,
        &b.key,
        &ingest_all,
        &ingest_a,
        &revoked_partner,
        &revoked_ingest,
    ];
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(engine.database_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    let logged = logs.lock().unwrap().clone();
    assert!(!logged.is_empty(), "the logs are captured");
    for token in tokens.iter().map(|t| t.as_str()).chain([TOKEN]) {
        let random = &token.as_bytes()[16..];
        for (name, haystack) in [("the database", &bytes), ("the logs", &logged)] {
            assert!(
                !haystack.windows(random.len()).any(|w| w == random),
                "{name} holds {token}"
            );
        }
    }
    engine.stop().await;
}

#[test]
fn serve_prints_a_new_operator_token_once() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("pw.db").display());
    let first_lines = |count: usize| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_postwire"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .env_remove("POSTWIRE_ADMIN_TOKEN")
            .env_remove("POSTWIRE_CONFIG")
            .env("POSTWIRE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..count {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            lines.push(line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        lines
    };
    let first = first_lines(2);
    assert!(first[0].starts_with("postwire listening on http://"), "{first:?}");
    let token = first[1]
        .strip_prefix("operator token (shown once): ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .trim();
    assert!(token.starts_with("pw_live_") && token.len() >= 48, "{token}");
    let again = first_lines(2);
    assert!(
        again[1].starts_with("operator token: the one printed on the first start"),
        "{again:?}"
    );
    assert!(!again.concat().contains(token));
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    assert!(!bytes.windows(token.len() - 8).any(|w| w == &token.as_bytes()[8..]));
}
