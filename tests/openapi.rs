//! The OpenAPI document at `/openapi.json`: it holds exactly the routes the routers declare, with
//! their methods and credentials; the engine answers every documented operation as documented;
//! and the document is valid OpenAPI 3.1, checked with the official JSON Schema (vendored in
//! `tests/fixtures/openapi-3.1`) and for what that schema cannot check.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::routes::{METHODS, balanced, declared_routes, method_calls};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The URI the document is registered under to resolve references into it.
const DOC_URI: &str = "urn:postwire:openapi";

/// The document as the engine serves it, without a credential.
async fn served(engine: &Engine) -> Value {
    let answer = engine.raw_as(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.json["openapi"], "3.1.0", "{}", answer.json["openapi"]);
    answer.json
}

// ---------------------------------------------------------------------------------------------
// The document against the routers' source

/// Every `(METHOD, path)` of the document.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    operations(doc)
        .map(|(path, method, _)| (method.to_uppercase(), path.to_owned()))
        .collect()
}

/// `(path, method, operation)` of every operation in the document.
fn operations(doc: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    doc["paths"].as_object().into_iter().flatten().flat_map(|(path, item)| {
        METHODS
            .iter()
            .filter_map(move |method| item.get(*method).map(|op| (path.as_str(), *method, op)))
    })
}

#[tokio::test]
async fn the_document_holds_every_route_and_nothing_else() {
    let engine = Engine::start().await;
    let doc = served(&engine).await;
    engine.stop().await;
    let declared = declared_routes();
    assert!(
        declared.contains(&("GET".into(), "/v1/partners/{partner_id}".into())) && declared.len() > 20,
        "the routers' source is read: {declared:?}"
    );
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty(),
        "routes without documentation (add #[utoipa::path] to the handler and list it in its module's Doc): \
         {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented routes no router declares: {unrouted:?}"
    );
}

#[test]
fn route_methods_are_read_from_method_routers() {
    assert_eq!(method_calls("get(list_partner).post(create_partner)"), ["GET", "POST"]);
    assert_eq!(method_calls("get(show).delete(remove)"), ["GET", "DELETE"]);
    assert_eq!(method_calls("post(reset_target)"), ["POST"]);
    assert_eq!(method_calls("delete(revoke_ingest)"), ["DELETE"]);
    assert_eq!(balanced("\"/a\", get(f)).route(x)"), "\"/a\", get(f)");
}

// ---------------------------------------------------------------------------------------------
// The engine against the document

/// Resources for filling path templates.
struct Fixture {
    partner: Partner,
    /// Another partner with settings, and its key, for the calls that check credentials: a
    /// partner key may delete its settings, and this one's may go.
    scratch: Partner,
    scratch_key: String,
    partner_key_id: String,
    ingest_key: String,
    ingest_key_id: String,
    delivery_id: String,
    plugin_id: String,
}

async fn fixture(engine: &Engine, receiver: &Receiver) -> Fixture {
    let docs = tenant(engine, receiver, "docs").await;
    // A second version of the tenant's plugin `ack`, for the rollback and the canary to name.
    let again = engine
        .raw(
            Method::POST,
            &format!("/v1/partners/{}/plugins?name=ack", docs.partner.id),
            Some(postwire_test_plugins::bytes("trivial")),
        )
        .await;
    assert_eq!(again.json["version"], 2, "{again:?}");
    let ingest = engine.post("/v1/ingest-keys", &json!({})).await;
    assert_eq!(ingest.status, StatusCode::CREATED, "{ingest:?}");
    let scratch = engine
        .partner_with("Scratch", &simple_settings(&receiver.url("/pb")))
        .await;
    Fixture {
        scratch_key: engine.partner_key(&scratch).await,
        scratch,
        partner_key_id: docs.key_id,
        ingest_key: ingest.json["token"].as_str().unwrap().to_owned(),
        ingest_key_id: ingest.json["id"].as_str().unwrap().to_owned(),
        delivery_id: docs.delivery_id,
        plugin_id: docs.plugin_id,
        partner: docs.partner,
    }
}

/// `template` with the fixture's resources, or with the scratch partner and ids that name
/// nothing when `real` is false (so that calls made only to check credentials leave the
/// fixture's resources be).
fn fill(template: &str, fixture: &Fixture, real: bool) -> String {
    let partner = if real { &fixture.partner } else { &fixture.scratch };
    let mut path = template.replace("{partner_id}", &partner.id);
    for (name, value) in [
        ("delivery_id", &fixture.delivery_id),
        ("plugin_id", &fixture.plugin_id),
        (
            "key_id",
            if template.starts_with("/v1/ingest-keys") {
                &fixture.ingest_key_id
            } else {
                &fixture.partner_key_id
            },
        ),
    ] {
        let nothing = format!("{name}_that_names_nothing");
        path = path.replace(&format!("{{{name}}}"), if real { value } else { &nothing });
    }
    assert!(
        !path.contains('{'),
        "{template}: a path parameter this test cannot fill yet; teach fill() its resource"
    );
    path
}

/// A body the operation accepts, with the query it needs.
fn valid_request(
    (method, template, op): (&str, &str, &Value),
    fixture: &Fixture,
    receiver: &Receiver,
) -> (String, Option<Value>) {
    let event = created(&fixture.partner, "evt_docs_2", "inq-docs-2");
    let body = match (method, template) {
        ("post", "/v1/partners") => json!({"name": "Another"}),
        ("post", "/v1/events") => event,
        ("post", "/v1/events/batch") => json!({"events": [created(&fixture.partner, "evt_docs_3", "inq-docs-3")]}),
        ("put", "/v1/partners/{partner_id}/settings/action-inquiry") => simple_settings(&receiver.url("/pb")),
        ("post", "/v1/partners/{partner_id}/settings/action-inquiry/preview") => {
            json!({"settings": simple_settings(&receiver.url("/pb")), "type": "action_inquiry.resolved"})
        }
        ("post", "/v1/partners/{partner_id}/settings/action-inquiry/disable") => json!({"reason": "maintenance"}),
        ("post", "/v1/partners/{partner_id}/deliveries/replay") => json!({"status": "delivered"}),
        ("post", "/v1/ingest-keys") => json!({"partners": [fixture.partner.id]}),
        ("post", "/v1/partners/{partner_id}/secret/rotate") => json!({"grace_secs": 60}),
        ("post", "/v1/partners/{partner_id}/settings/action-inquiry/test") => {
            return ("?type=action_inquiry.resolved".into(), None);
        }
        ("post", "/v1/partners/{partner_id}/plugins") => return ("?name=again".into(), None),
        // Called in this order: the fixture's canary (ack@1) is promoted, then ack@2 attached,
        // then ack@1 is a canary again; the settings saved after attach no plugin.
        ("post", "/v1/partners/{partner_id}/settings/action-inquiry/rollback") => json!({"to": "ack@2"}),
        ("put", "/v1/partners/{partner_id}/settings/action-inquiry/canary") => {
            json!({"candidate": "ack@1", "share_percent": 5})
        }
        ("post", "/v1/partners/{partner_id}/plugins/diff") => json!({"candidate": "ack@1", "last": 5}),
        ("get", "/v1/partners/{partner_id}/deliveries") => return ("?status=delivered&limit=10".into(), None),
        ("post" | "put", _) if op.get("requestBody").is_some() => json!({}),
        _ => return (String::new(), None),
    };
    (String::new(), Some(body))
}

/// The operation's security scheme names.
fn schemes(operation: &Value) -> BTreeSet<String> {
    operation["security"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|requirement| requirement.as_object().unwrap().keys().cloned())
        .collect()
}

/// The operations in the order they are called: deletions last, deepest first, so that no call
/// removes what a later one needs.
fn call_order(doc: &Value) -> Vec<(String, String, Value)> {
    let mut calls: Vec<_> = operations(doc)
        .map(|(path, method, op)| (path.to_owned(), method.to_owned(), op.clone()))
        .collect();
    calls.sort_by_key(|(path, method, _)| (method == "delete", std::cmp::Reverse(path.len())));
    calls
}

/// The JSON Schema of a documented answer, as a reference into the document.
fn response_schema(doc: &Value, path: &str, method: &str, status: u16, content_type: &str) -> Option<Value> {
    let responses = &doc["paths"][path][method]["responses"];
    let mut response = responses.get(status.to_string())?;
    if let Some(target) = response["$ref"].as_str() {
        response = pointer(doc, target).expect("a response reference resolves");
    }
    // The media type as sent, parameters included, or else its essence (`text/plain`).
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let media = [content_type, essence]
        .into_iter()
        .find(|media| response["content"].get(*media).is_some())?;
    response["content"][media].get("schema")?;
    let escape = |s: &str| s.replace('~', "~0").replace('/', "~1");
    let location = match responses[status.to_string()]["$ref"].as_str() {
        Some(target) => format!("{}/content/{}/schema", target.trim_start_matches('#'), escape(media)),
        None => format!(
            "/paths/{}/{method}/responses/{status}/content/{}/schema",
            escape(path),
            escape(media)
        ),
    };
    Some(reference(&location))
}

/// A schema that is a reference to the JSON pointer `location` in the document.
fn reference(location: &str) -> Value {
    // A pointer in a URI's fragment is percent-encoded: path templates hold braces, media types
    // with parameters hold spaces.
    let fragment = location
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace(' ', "%20");
    json!({"$ref": format!("{DOC_URI}#{fragment}")})
}

/// The errors of `instance` against `schema`, which may refer into the document.
fn schema_errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let registry = jsonschema::Registry::new()
        .add(DOC_URI, doc.clone())
        .expect("the document is a resource")
        .prepare()
        .expect("the registry is ready");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_registry(&registry)
        .build(schema)
        .unwrap_or_else(|e| panic!("a validator for {schema}: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[tokio::test]
async fn the_engine_answers_every_operation_as_documented() {
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let engine = Engine::start().await;
    let doc = served(&engine).await;
    let fixture = fixture(&engine, &receiver).await;
    let mut problems = Vec::new();

    // Credentials: none, an ingest key, a partner key; each gets in exactly where the
    // operation's `security` says (ids that name nothing: these calls must not remove anything).
    for (path, method, op) in call_order(&doc) {
        let schemes = schemes(&op);
        let url = fill(&path, &fixture, false);
        let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = Some(b"{}".to_vec());
        let none = engine.raw_as(None, verb.clone(), &url, body.clone()).await;
        if schemes.is_empty() != (none.status != StatusCode::UNAUTHORIZED) {
            problems.push(format!(
                "{method} {path} without a credential: {}, security {schemes:?}",
                none.status
            ));
        }
        for (scheme, token) in [
            ("ingest_key", &fixture.ingest_key),
            ("partner_key", &fixture.scratch_key),
        ] {
            if schemes.is_empty() {
                continue;
            }
            let answer = engine.raw_as(Some(token), verb.clone(), &url, body.clone()).await;
            let let_in = ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&answer.status);
            if let_in != schemes.contains(scheme) {
                problems.push(format!(
                    "{method} {path} with a {scheme}: {}, security {schemes:?}",
                    answer.status
                ));
            }
        }
    }

    // The operator token and valid requests: every answer's status is documented, and its body
    // matches the documented schema; every request body sent matches the documented one.
    let mut succeeded = BTreeSet::new();
    for (path, method, op) in call_order(&doc) {
        let (query, body) = valid_request((&method, &path, &op), &fixture, &receiver);
        let url = format!("{}{query}", fill(&path, &fixture, true));
        if let Some(body) = &body {
            let schema = reference(&format!(
                "/paths/{}/{method}/requestBody/content/application~1json/schema",
                path.replace('~', "~0").replace('/', "~1")
            ));
            match op["requestBody"]["content"].get("application/json") {
                None => problems.push(format!("{method} {path}: no application/json request body documented")),
                Some(_) => {
                    for error in schema_errors(&doc, &schema, body) {
                        problems.push(format!("{method} {path}: the request {body} does not match: {error}"));
                    }
                }
            }
        }
        let bytes = match (method.as_str(), path.as_str()) {
            ("post", "/v1/partners/{partner_id}/plugins") => Some(postwire_test_plugins::bytes("trivial")),
            _ => body.map(|b| b.to_string().into_bytes()),
        };
        let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let answer = engine.raw(verb, &url, bytes).await;
        let status = answer.status.as_u16();
        if op["responses"].get(status.to_string()).is_none() {
            problems.push(format!("{method} {path}: {status} is not documented: {answer:?}"));
            continue;
        }
        if answer.status.is_success() {
            succeeded.insert(format!("{method} {path}"));
        }
        match response_schema(&doc, &path, &method, status, &answer.content_type) {
            Some(schema) => {
                for error in schema_errors(&doc, &schema, &answer.json) {
                    problems.push(format!("{method} {path}: the {status} answer does not match: {error}"));
                }
            }
            None if answer.json != "" => problems.push(format!(
                "{method} {path}: the {status} answer has an undocumented body: {answer:?}"
            )),
            None => {}
        }
    }

    // Methods a documented path does not document are not routed: the router answers 405.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = engine.raw(verb, &fill(path, &fixture, true), None).await;
            if answer.status != StatusCode::METHOD_NOT_ALLOWED {
                problems.push(format!(
                    "{method} {path} is not documented but answers {}",
                    answer.status
                ));
            }
        }
    }
    // And a path nobody documents is the router's bare 404, which is how a documented route that
    // is not routed would show.
    let unrouted = engine.raw(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(
        (unrouted.status, unrouted.json.clone()),
        (StatusCode::NOT_FOUND, json!(""))
    );
    engine.stop().await;

    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let all: BTreeSet<String> = operations(&doc).map(|(p, m, _)| format!("{m} {p}")).collect();
    let failed: Vec<_> = all.difference(&succeeded).collect();
    assert!(
        failed.is_empty(),
        "operations that did not succeed with a valid request: {failed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The document against the OpenAPI 3.1 specification

/// The official OpenAPI 3.1 JSON Schemas: the document's structure, and its Schema Objects in the
/// OpenAPI dialect of JSON Schema 2020-12.
fn fixture_schema(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/openapi-3.1")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every problem of an OpenAPI 3.1 document: against the official schema, then what a schema
/// cannot check.
fn document_problems(doc: &Value) -> Vec<String> {
    let registry = jsonschema::Registry::new()
        .extend([
            (
                "https://spec.openapis.org/oas/3.1/schema",
                fixture_schema("schema.json"),
            ),
            (
                "https://spec.openapis.org/oas/3.1/dialect/base",
                fixture_schema("dialect-base.json"),
            ),
            (
                "https://spec.openapis.org/oas/3.1/meta/base",
                fixture_schema("meta-base.json"),
            ),
        ])
        .expect("the OpenAPI schemas are resources")
        .prepare()
        .expect("the registry is ready");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&fixture_schema("schema-base.json"))
        .expect("the OpenAPI 3.1 schema compiles");
    let mut problems: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("schema: {e} at {}", e.instance_path()))
        .collect();

    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(doc, "", &mut refs);
    for (at, target) in refs {
        if pointer(doc, &target).is_none() {
            problems.push(format!("{at}: $ref {target} resolves to nothing"));
        }
    }
    // operationIds are unique.
    let mut ids = BTreeMap::new();
    for (path, method, op) in operations(doc) {
        match op["operationId"].as_str() {
            None => problems.push(format!("{method} {path}: no operationId")),
            Some(id) => {
                if let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}")) {
                    problems.push(format!("operationId {id} of both {other} and {method} {path}"));
                }
            }
        }
    }
    // Path parameters are those of the template, each declared once and required.
    for (path, method, op) in operations(doc) {
        let templated: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .map(|rest| rest.split('}').next().unwrap().to_owned())
            .collect();
        let mut declared = BTreeSet::new();
        for parameter in op["parameters"].as_array().into_iter().flatten() {
            let (name, place) = (parameter["name"].as_str().unwrap_or_default(), &parameter["in"]);
            if !declared.insert((name.to_owned(), place.as_str().unwrap_or_default().to_owned())) {
                problems.push(format!(
                    "{method} {path}: parameter {name} in {place} is declared twice"
                ));
            }
            if place == "path" && !templated.contains(name) {
                problems.push(format!("{method} {path}: path parameter {name} is not in the path"));
            }
            if place == "path" && parameter["required"] != true {
                problems.push(format!("{method} {path}: path parameter {name} is not required"));
            }
        }
        for name in templated {
            if !declared.contains(&(name.clone(), "path".into())) {
                problems.push(format!("{method} {path}: path parameter {name} is not declared"));
            }
        }
        // Security requirements name defined schemes.
        for scheme in schemes(op) {
            if doc["components"]["securitySchemes"].get(&scheme).is_none() {
                problems.push(format!("{method} {path}: security scheme {scheme} is not defined"));
            }
        }
    }
    problems
}

/// Every `$ref` in `value`: where it is, and its target.
fn collect_refs(value: &Value, at: &str, refs: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => refs.push((at.to_owned(), target.clone())),
                    _ => collect_refs(item, &format!("{at}/{key}"), refs),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_refs(item, &format!("{at}/{i}"), refs);
            }
        }
        _ => {}
    }
}

/// The target of a local reference (`#/components/...`), if it exists.
fn pointer<'a>(doc: &'a Value, target: &str) -> Option<&'a Value> {
    doc.pointer(target.strip_prefix('#')?)
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let engine = Engine::start().await;
    let doc = served(&engine).await;
    engine.stop().await;
    let problems = document_problems(&doc);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let schemes: BTreeSet<&String> = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        schemes,
        BTreeSet::from([&"ingest_key".into(), &"operator_token".into(), &"partner_key".into()])
    );
}

/// A way to break a document: what it does, how, and the problem it must cause.
type Break = (&'static str, fn(&mut Value), &'static str);

/// The checks find what is wrong: each broken copy of the document has the problem it was given.
#[tokio::test]
async fn broken_documents_are_refused() {
    let engine = Engine::start().await;
    let doc = served(&engine).await;
    engine.stop().await;
    let op = "/paths/~1v1~1partners~1{partner_id}/get";
    let breaks: [Break; 8] = [
        (
            "no info",
            |d| drop(d.as_object_mut().unwrap().remove("info")),
            "schema: \"info\" is a required property",
        ),
        (
            "a 3.0 version",
            |d| d["openapi"] = json!("3.0.3"),
            "schema: \"3.0.3\" does not match",
        ),
        (
            "a misspelt type in a schema",
            |d| d["components"]["schemas"]["Partner"]["type"] = json!("objekt"),
            "schema: ",
        ),
        (
            "a status that is not one",
            |d| {
                let responses = d
                    .pointer_mut("/paths/~1v1~1partners~1{partner_id}/get/responses")
                    .unwrap();
                responses["2000"] = json!({"description": "no"});
            },
            "schema: ",
        ),
        (
            "a dangling reference",
            |d| {
                d.pointer_mut("/paths/~1v1~1partners~1{partner_id}/get/responses/404")
                    .unwrap()["$ref"] = json!("#/components/responses/Nowhere")
            },
            "$ref #/components/responses/Nowhere resolves to nothing",
        ),
        (
            "a duplicate operationId",
            |d| {
                d.pointer_mut("/paths/~1v1~1partners~1{partner_id}/get").unwrap()["operationId"] =
                    json!("create_partner")
            },
            "operationId create_partner of both",
        ),
        (
            "an undeclared path parameter",
            |d| d.pointer_mut("/paths/~1v1~1partners~1{partner_id}/get").unwrap()["parameters"] = json!([]),
            "path parameter partner_id is not declared",
        ),
        (
            "an undefined security scheme",
            |d| d.pointer_mut("/paths/~1v1~1partners~1{partner_id}/get").unwrap()["security"] = json!([{"admin": []}]),
            "security scheme admin is not defined",
        ),
    ];
    assert!(doc.pointer(op).is_some(), "{op} is in the document");
    for (what, break_it, expected) in breaks {
        let mut broken = doc.clone();
        break_it(&mut broken);
        let problems = document_problems(&broken);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem containing {expected:?}, got {problems:#?}"
        );
    }
}
