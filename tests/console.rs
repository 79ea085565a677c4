//! The console at `/console`, over real HTTP: a real engine, a real receiver on 127.0.0.1, and a
//! client that keeps the session cookie as a browser would. Signing in and out, the CSRF check,
//! the security headers and the cookie's flags, settings with a field error then saved, a test
//! postback showing the receiver's answer, the log listing it, one partner kept out of
//! another's pages and postbacks, plugins dry-run and attached from their pages (their tries
//! counted with the API's), a plugin version shipped from its pages (a replay diff against the
//! attached version, canaries started, stopped, promoted and detached, a rollback), the
//! operator creating a partner, and the operator's delivery rates.

mod common;

use axum::http::StatusCode;
use common::{Engine, Receiver, Reply, TOKEN, created, eventually, sample_settings, settings_path, simple_settings};
use serde_json::{Value, json};

/// A visitor of the console: one session cookie, no redirects followed, so that each answer can
/// be checked as sent.
struct Visitor {
    base: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

/// One answer of the console.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let at = self
            .text
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("a form with a CSRF token in {}", self.text));
        let rest = &self.text[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Visitor {
    fn new(engine: &Engine) -> Visitor {
        Visitor {
            base: engine.base.clone(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await.expect("the console answers");
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            let removed = pair.split_once('=').is_none_or(|(_, value)| value.is_empty());
            self.cookie = if removed { None } else { Some(pair) };
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// Posts a file form as a browser does (`multipart/form-data`): `name`, and `wasm` as a file.
    async fn upload(&mut self, path: &str, name: &str, wasm: &[u8]) -> Page {
        let boundary = "----console-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"wasm\"; filename=\"plugin.wasm\"\r\n\
             Content-Type: application/wasm\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(wasm);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        self.send(request).await
    }

    /// Signs in with `key`; returns the first page after it.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/console/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{form:?}");
        let csrf = form.csrf();
        let answer = self.post("/console/sign-in", &[("csrf", &csrf), ("key", key)]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        let next = answer.location().to_owned();
        self.get(&next).await
    }
}

fn assert_secure_headers(page: &Page) {
    let header = |name: &str| page.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(
        header("content-security-policy"),
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("x-frame-options"), "DENY");
}

/// No inline script or style anywhere: the policy would block them.
fn assert_no_inline(page: &Page) {
    for (at, _) in page.text.match_indices("<script") {
        let tag = &page.text[at..at + page.text[at..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/console/assets/"), "an inline script: {tag}");
    }
    assert!(
        !page.text.contains(" style=") && !page.text.contains("<style"),
        "inline style"
    );
    assert!(
        !page.text.contains("http://") || !page.text.contains("src=\"http"),
        "an asset from elsewhere"
    );
}

fn settings_form<'a>(csrf: &'a str, url: &'a str, action: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("url", url),
        ("method", "POST"),
        ("body_format", "json"),
        (
            "body_template",
            "{\"inquiry\": \"{ActionInquiryId}\", \"order\": \"{OrderId}\", \"amount\": {TransactionAmount}}",
        ),
        ("headers", "X-Partner-Tag: console\n"),
        ("min_delay_secs", "0"),
        ("max_requests_per_sec", ""),
        ("success_response", "accepted"),
        ("error_response", "<script>alert(1)</script>"),
        ("events", "action_inquiry.created"),
        ("events", "action_inquiry.resolved"),
        ("transform_plugin", ""),
        ("classify_plugin", ""),
        ("plugin_config", ""),
        ("sample", "action_inquiry.created"),
        ("action", action),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_signs_in_configures_tests_and_reads_its_log() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("accepted by the receiver").header("x-receiver", "yes")).await;
    let partner = engine.create_partner("Acme <Shoes>").await;
    let key = engine.partner_key(&partner).await;
    let pb = receiver.url("/pb");
    let mut visitor = Visitor::new(&engine);

    // Not signed in: every page sends to the sign-in page, which has the security headers.
    let page = visitor.get("/console/settings").await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    assert_secure_headers(&page);
    let missing = visitor.get("/console/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_secure_headers(&missing);
    let form = visitor.get("/console/sign-in").await;
    assert_secure_headers(&form);
    assert_no_inline(&form);
    let set_cookie = form.headers["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(flag), "{flag} in {set_cookie}");
    }

    // Signing in without the form's token is refused, and so is an unknown key.
    let csrf = form.csrf();
    let refused = visitor.post("/console/sign-in", &[("key", &key)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert!(refused.text.contains("security token"), "{}", refused.text);
    assert_secure_headers(&refused);
    let unknown = visitor
        .post("/console/sign-in", &[("csrf", &csrf), ("key", "pw_live_NotAKey")])
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{unknown:?}");
    assert!(unknown.text.contains("unknown or revoked"), "{}", unknown.text);

    let signed = visitor
        .post("/console/sign-in", &[("csrf", &csrf), ("key", &key)])
        .await;
    assert_eq!(
        (signed.status, signed.location()),
        (StatusCode::SEE_OTHER, "/console/settings")
    );
    let cookie = signed.headers["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let secret_part = key.trim_start_matches("pw_live_");
    assert!(
        !cookie.contains(secret_part) && !cookie.contains(&key[..16]),
        "the cookie shows the key: {cookie}"
    );

    // The settings page: the catalogue beside the body, escaped names, nothing inline.
    let page = visitor.get("/console/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_secure_headers(&page);
    assert_no_inline(&page);
    assert!(page.text.contains("data-insert=\"{OrderId}\""), "the catalogue");
    assert!(page.text.contains("Acme &lt;Shoes&gt;") && !page.text.contains("Acme <Shoes>"));
    let csrf = page.csrf();
    assert_ne!(csrf, form.csrf(), "signing in starts a new session");

    // A POST without the session's token changes nothing.
    let mut forged = settings_form("", &pb, "save");
    forged.retain(|(name, _)| *name != "csrf");
    let refused = visitor.post("/console/settings", &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = visitor
        .post(
            "/console/settings",
            &settings_form("not-the-token", &receiver.url("/pb"), "save"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        engine.get(&common::settings_path(&partner)).await.status,
        StatusCode::NOT_FOUND,
        "nothing was saved"
    );

    // A bad URL: the API's own error, beside the URL field; nothing saved.
    let bad = visitor
        .post(
            "/console/settings",
            &settings_form(&csrf, "ftp://partner.example/pb", "save"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    let at = bad
        .text
        .find("id=\"url-error\"")
        .expect("an error beside the URL field");
    let beside = &bad.text[at..at + bad.text[at..].find("</p>").unwrap()];
    assert!(
        beside.contains("url:") && beside.contains("ftp://partner.example/pb"),
        "{beside}"
    );
    assert!(
        bad.text
            .contains("id=\"url\" name=\"url\" type=\"url\" value=\"ftp://partner.example/pb\" aria-invalid=\"true\"")
    );
    assert!(bad.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !bad.text.contains("<script>alert"));
    assert_eq!(
        engine.get(&common::settings_path(&partner)).await.status,
        StatusCode::NOT_FOUND
    );

    // A header line without a colon is named too.
    let mut headerless = settings_form(&csrf, &pb, "save");
    headerless.iter_mut().find(|(n, _)| *n == "headers").unwrap().1 = "no colon here";
    let bad = visitor.post("/console/settings", &headerless).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("id=\"headers-error\""), "{}", bad.text);

    // The preview shows the exact request for the sample event, without saving.
    let preview = visitor
        .post(
            "/console/settings",
            &settings_form(&csrf, &receiver.url("/pb"), "preview"),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(
        preview.text.contains(&format!("POST {}", receiver.url("/pb"))),
        "{}",
        preview.text
    );
    assert!(preview.text.contains("x-partner-tag: console") || preview.text.contains("X-Partner-Tag: console"));
    assert!(preview.text.contains("&quot;amount&quot;: 149.90"), "{}", preview.text);
    assert_eq!(
        engine.get(&common::settings_path(&partner)).await.status,
        StatusCode::NOT_FOUND
    );

    // Fixed and saved: the API reads what the page saved.
    let saved = visitor
        .post("/console/settings", &settings_form(&csrf, &receiver.url("/pb"), "save"))
        .await;
    assert_eq!(
        (saved.status, saved.location()),
        (StatusCode::SEE_OTHER, "/console/settings?saved=1")
    );
    let stored = engine.settings(&partner).await;
    assert_eq!(stored["settings"]["url"], receiver.url("/pb"));
    assert_eq!(stored["settings"]["headers"]["X-Partner-Tag"], "console");
    assert_eq!(stored["settings"]["success_response"], "accepted");
    let page = visitor.get("/console/settings?saved=1").await;
    assert!(page.text.contains("Saved.") && page.text.contains(&receiver.url("/pb")));

    // The test postback shows the receiver's answer.
    let page = visitor.get("/console/test").await;
    assert_eq!(page.status, StatusCode::OK);
    let tested = visitor
        .post(
            "/console/test",
            &[("csrf", &page.csrf()), ("type", "action_inquiry.created")],
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert!(tested.text.contains("accepted by the receiver"), "{}", tested.text);
    assert!(tested.text.contains("x-receiver: yes"), "{}", tested.text);
    assert!(tested.text.contains("<dd class=\"status\">200</dd>"), "{}", tested.text);
    assert!(
        tested.text.contains("<span class=\"verdict success\">success</span>"),
        "{}",
        tested.text
    );
    let hits = receiver.wait_hits(1).await;
    assert_eq!(hits[0].header("x-partner-tag"), Some("console"));

    // A real postback is in the log, filtered, and in full on its own page.
    let delivery = engine
        .send_event(&created(&partner, "evt_console_1", "inq-console-1"))
        .await;
    engine.wait_status(&partner, &delivery, "delivered").await;
    let log = visitor.get("/console/log").await;
    assert_eq!(log.status, StatusCode::OK);
    assert_no_inline(&log);
    assert!(
        log.text.contains(&delivery) && log.text.contains("inq-console-1"),
        "{}",
        log.text
    );
    assert!(
        log.text.contains("<svg") && log.text.contains("1 delivered"),
        "{}",
        log.text
    );
    let filtered = visitor.get("/console/log?status=failed").await;
    assert!(!filtered.text.contains(&delivery));
    let filtered = visitor
        .get("/console/log?inquiry_id=inq-console-1&status=delivered")
        .await;
    assert!(filtered.text.contains(&delivery));
    let bad_filter = visitor.get("/console/log?status=lost").await;
    assert_eq!(bad_filter.status, StatusCode::BAD_REQUEST);
    assert!(bad_filter.text.contains("is not a delivery status"));
    let one = visitor.get(&format!("/console/log/{delivery}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(
        one.text.contains("Attempt 1") && one.text.contains("accepted by the receiver"),
        "{}",
        one.text
    );

    // Retry from the page: a second attempt reaches the receiver.
    let retried = visitor
        .post(&format!("/console/log/{delivery}/retry"), &[("csrf", &one.csrf())])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{retried:?}");
    engine.wait_attempts(&partner, &delivery, 2).await;

    // Signing out ends the session: the same cookie no longer opens a page.
    let before = visitor.cookie.clone();
    let page = visitor.get("/console/log").await;
    let out = visitor.post("/console/sign-out", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    visitor.cookie = before;
    let page = visitor.get("/console/settings").await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_cannot_reach_another_partners_pages_or_postbacks() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let acme = engine
        .partner_with("acme", &simple_settings(&receiver.url("/acme")))
        .await;
    let other = engine
        .partner_with("other", &simple_settings(&receiver.url("/other")))
        .await;
    let acme_delivery = engine.send_event(&created(&acme, "evt_acme", "inq-acme")).await;
    engine.wait_status(&acme, &acme_delivery, "delivered").await;
    let other_key = engine.partner_key(&other).await;
    let keys = engine.get(&format!("/v1/partners/{}/keys", other.id)).await;
    let other_key_id = keys.json["keys"][0]["id"].as_str().unwrap().to_owned();

    let mut visitor = Visitor::new(&engine);
    let page = visitor.sign_in(&other_key).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(&receiver.url("/other")) && !page.text.contains(&receiver.url("/acme")));
    let csrf = page.csrf();

    // By id, by URL, by form: acme's postback and pages stay out of reach.
    let log = visitor.get("/console/log").await;
    assert!(!log.text.contains(&acme_delivery));
    let by_id = visitor.get(&format!("/console/log/{acme_delivery}")).await;
    assert_eq!(by_id.status, StatusCode::NOT_FOUND, "{}", by_id.text);
    assert!(!by_id.text.contains("inq-acme"));
    let retry = visitor
        .post(&format!("/console/log/{acme_delivery}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(retry.status, StatusCode::NOT_FOUND);
    let pick = visitor
        .post("/console/operator/pick", &[("csrf", &csrf), ("partner_id", &acme.id)])
        .await;
    assert_eq!(pick.status, StatusCode::FORBIDDEN);
    let keys_page = visitor
        .get(&format!("/console/operator/partners/{}/keys", acme.id))
        .await;
    assert_eq!(keys_page.status, StatusCode::FORBIDDEN);
    let delivery = engine.delivery(&acme, &acme_delivery).await;
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1, "no retry happened");

    // Plugins: each partner sees its own only.
    let upload = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name=acme-only", acme.id),
            Some(postwire_test_plugins::bytes("trivial")),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    let plugin_id = upload.json["id"].as_str().unwrap();
    let plugins = visitor.get("/console/plugins").await;
    assert_eq!(plugins.status, StatusCode::OK);
    assert!(plugins.text.contains("No plugins yet.") && !plugins.text.contains(plugin_id));
    let mut acme_visitor = Visitor::new(&engine);
    let acme_key = engine.partner_key(&acme).await;
    acme_visitor.sign_in(&acme_key).await;
    let plugins = acme_visitor.get("/console/plugins").await;
    assert!(
        plugins.text.contains(plugin_id) && plugins.text.contains("acme-only"),
        "{}",
        plugins.text
    );
    assert!(
        plugins.text.contains(upload.json["sha256"].as_str().unwrap()),
        "{}",
        plugins.text
    );

    // Uploading from the page: the form's token travels in its action, as a file form is not
    // urlencoded.
    let action = {
        let at = plugins.text.find("action=\"/console/plugins?csrf=").unwrap() + "action=\"".len();
        plugins.text[at..at + plugins.text[at..].find('"').unwrap()].replace("&amp;", "&")
    };
    let refused = acme_visitor
        .upload("/console/plugins", "no-token", &postwire_test_plugins::bytes("trivial"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad = acme_visitor.upload(&action, "broken", b"not wasm").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad.text.contains("Not uploaded: body:"), "{}", bad.text);
    let uploaded = acme_visitor
        .upload(&action, "from-the-page", &postwire_test_plugins::bytes("trivial"))
        .await;
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.text);
    let listed = engine.get(&format!("/v1/partners/{}/plugins", acme.id)).await;
    assert!(
        listed.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "from-the-page"),
        "{listed:?}"
    );

    // The operator revokes the key: the session ends on its next request.
    let revoked = engine
        .raw(
            reqwest::Method::DELETE,
            &format!("/v1/partners/{}/keys/{other_key_id}", other.id),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked:?}");
    let page = visitor.get("/console/settings").await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/console/sign-in?why=revoked")
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_picks_a_partner_and_manages_its_keys() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let acme = engine
        .partner_with("acme", &simple_settings(&receiver.url("/acme")))
        .await;
    let mut visitor = Visitor::new(&engine);
    let page = visitor.sign_in(TOKEN).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains("Postbacks due now") && page.text.contains(acme.id.as_str()));
    let csrf = page.csrf();

    let picked = visitor
        .post("/console/operator/pick", &[("csrf", &csrf), ("partner_id", &acme.id)])
        .await;
    assert_eq!(
        (picked.status, picked.location()),
        (StatusCode::SEE_OTHER, "/console/settings")
    );
    let settings = visitor.get("/console/settings").await;
    assert!(settings.text.contains(&receiver.url("/acme")), "{}", settings.text);

    let created = visitor
        .post(
            &format!("/console/operator/partners/{}/keys", acme.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let at = created.text.find("<pre class=\"token\">").unwrap() + "<pre class=\"token\">".len();
    let token = created.text[at..at + created.text[at..].find('<').unwrap()].to_owned();
    assert_eq!(
        engine.get_as(&token, &common::settings_path(&acme)).await.status,
        StatusCode::OK
    );
    let keys = engine.get(&format!("/v1/partners/{}/keys", acme.id)).await;
    let key_id = keys.json["keys"][0]["id"].as_str().unwrap().to_owned();
    let revoked = visitor
        .post(
            &format!("/console/operator/partners/{}/keys/{key_id}/revoke", acme.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.text.contains("is revoked"));
    assert_eq!(
        engine.get_as(&token, &common::settings_path(&acme)).await.status,
        StatusCode::UNAUTHORIZED
    );
    engine.stop().await;
}

/// The first `<{tag} class="{class}"…>…<` text of a page, unescaped of nothing: as sent.
fn inner<'a>(text: &'a str, opening: &str) -> &'a str {
    let at = text.find(opening).unwrap_or_else(|| panic!("{opening} in {text}"));
    let rest = &text[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = start + rest[start..].find("</").unwrap();
    &rest[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_dry_runs_and_attaches_plugins_from_their_page() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = engine.create_partner("acme").await;
    let key = engine.partner_key(&partner).await;
    let upload = |name: &str, example: &str| {
        let path = format!("/v1/partners/{}/plugins?name={name}", partner.id);
        let bytes = postwire_test_plugins::example_bytes(example);
        let engine = &engine;
        async move {
            let answer = engine.raw(reqwest::Method::POST, &path, Some(bytes)).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
            answer.json["id"].as_str().unwrap().to_owned()
        }
    };
    let soap = upload("soap", "soap-envelope").await;
    let status = upload("json-status", "json-status").await;
    let mut visitor = Visitor::new(&engine);
    visitor.sign_in(&key).await;

    // The list links each plugin's page and offers an attach button per export.
    let list = visitor.get("/console/plugins").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_no_inline(&list);
    assert!(
        list.text.contains(&format!("href=\"/console/plugins/{soap}\"")),
        "{}",
        list.text
    );
    assert!(
        list.text
            .contains(&format!("action=\"/console/plugins/{soap}/attach\""))
    );
    assert!(list.text.contains("Attach as transform") && list.text.contains("Attach as classifier"));
    let page = visitor.get(&format!("/console/plugins/{soap}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_secure_headers(&page);
    assert_no_inline(&page);
    assert!(page.text.contains("<h1>Plugin soap@1</h1>"), "{}", page.text);
    assert!(
        !page.text.contains("id=\"response_status\""),
        "a transform is not asked for an answer"
    );
    let csrf = page.csrf();
    let run_path = format!("/console/plugins/{soap}/run");
    let attach_path = format!("/console/plugins/{soap}/attach");

    // Without settings: nothing to attach to, and no request to run on unless one is pasted.
    let attached = visitor
        .post(&attach_path, &[("csrf", &csrf), ("as", "transform")])
        .await;
    assert_eq!(attached.status, StatusCode::CONFLICT, "{}", attached.text);
    assert!(attached.text.contains("you have no settings yet"), "{}", attached.text);
    let run = visitor
        .post(&run_path, &[("csrf", &csrf), ("event_type", "action_inquiry.created")])
        .await;
    assert_eq!(run.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", run.text);
    assert!(
        inner(&run.text, "id=\"request-error\"").contains("the partner has no settings to render a request from"),
        "{}",
        run.text
    );
    let request = json!({"method": "POST", "url": receiver.url("/soap"), "headers": {"Authorization": "Bearer s3cr3t-token"}, "body": "{}"});
    let run = visitor
        .post(
            &run_path,
            &[
                ("csrf", &csrf),
                ("event_type", "action_inquiry.resolved"),
                ("request", &request.to_string()),
            ],
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    assert_no_inline(&run);
    let output = inner(&run.text, "<pre class=\"request request-out\"");
    assert!(
        output.contains("&lt;soap:Envelope") && output.contains("action_inquiry.resolved"),
        "{output}"
    );
    let result = inner(&run.text, "<pre class=\"request request-in\"").to_owned() + output;
    assert!(
        !result.contains("s3cr3t-token") && result.contains("Authorization: [redacted]"),
        "secrets are hidden as in the attempt log: {result}"
    );
    let fuel: u64 = inner(&run.text, "<dd class=\"fuel\"").parse().unwrap();
    assert!(fuel > 0);
    assert!(run.text.contains("Peak memory") && run.text.contains("Time"));

    // Bad pasted JSON: the error beside its field; the form keeps what was sent, escaped.
    let run = visitor
        .post(
            &run_path,
            &[
                ("csrf", &csrf),
                ("event", "{\"id\": \"<script>alert(1)</script>\""),
                ("config", "not json"),
            ],
        )
        .await;
    assert_eq!(run.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", run.text);
    assert!(
        inner(&run.text, "id=\"event-error\"").contains("is not JSON"),
        "{}",
        run.text
    );
    assert!(
        inner(&run.text, "id=\"config-error\"").contains("is not JSON"),
        "{}",
        run.text
    );
    assert!(run.text.contains("aria-describedby=\"event-error\""));
    assert!(!run.text.contains("<script>alert(1)"), "{}", run.text);
    // A pasted event the API refuses: the API's field error, beside the event.
    let run = visitor
        .post(
            &run_path,
            &[
                ("csrf", &csrf),
                ("event", "{\"id\": 5}"),
                ("request", &request.to_string()),
            ],
        )
        .await;
    assert_eq!(run.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", run.text);
    assert!(
        inner(&run.text, "id=\"event-error\"").contains("event."),
        "{}",
        run.text
    );

    // Without the session's token nothing runs and nothing is attached.
    let refused = visitor
        .post(&run_path, &[("event_type", "action_inquiry.created")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    engine
        .put_settings(&partner, &common::sample_settings(&receiver.url("/pb")))
        .await;
    let refused = visitor.post(&attach_path, &[("as", "transform")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(engine.settings(&partner).await["settings"]["transform_plugin"].is_null());

    // With settings: a sample event runs on the request they render; attaching saves them.
    let run = visitor
        .post(&run_path, &[("csrf", &csrf), ("event_type", "action_inquiry.created")])
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    assert!(inner(&run.text, "<pre class=\"request request-in\"").contains(&receiver.url("/pb")));
    let attached = visitor
        .post(&attach_path, &[("csrf", &csrf), ("as", "transform")])
        .await;
    assert_eq!(
        (attached.status, attached.location()),
        (
            StatusCode::SEE_OTHER,
            format!("/console/plugins/{soap}?attached=transform").as_str()
        )
    );
    assert_eq!(
        engine.settings(&partner).await["settings"]["transform_plugin"],
        soap.as_str()
    );
    let page = visitor.get(attached.location()).await;
    assert!(page.text.contains("Attached as the transform"), "{}", page.text);
    assert!(inner(&page.text, "<dd class=\"attached\"").contains("transform"));
    // A role the plugin does not export: the settings' own check says so.
    let wrong = visitor.post(&attach_path, &[("csrf", &csrf), ("as", "classify")]).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.text);
    assert!(wrong.text.contains("does not export classify"), "{}", wrong.text);

    // A classifier: run on a pasted answer, its verdict shown escaped; without an answer the
    // API's message beside the answer's fields.
    let status_run = format!("/console/plugins/{status}/run");
    let page = visitor.get(&format!("/console/plugins/{status}")).await;
    assert!(page.text.contains("id=\"response_status\""), "{}", page.text);
    let run = visitor.post(&status_run, &[("csrf", &csrf)]).await;
    assert_eq!(run.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", run.text);
    assert!(
        inner(&run.text, "id=\"response_status-error\"").contains("give a response to classify"),
        "{}",
        run.text
    );
    let run = visitor
        .post(
            &status_run,
            &[
                ("csrf", &csrf),
                ("response_status", "200"),
                (
                    "response_body",
                    "{\"status\": \"error\", \"retryable\": false, \"message\": \"<b>no such order</b>\"}",
                ),
            ],
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    assert!(run.text.contains("class=\"verdict fail\""), "{}", run.text);
    assert!(run.text.contains("&lt;b&gt;no such order") && !run.text.contains("<b>no such order"));
    let run = visitor
        .post(&status_run, &[("csrf", &csrf), ("response_status", "two hundred")])
        .await;
    assert_eq!(run.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", run.text);
    assert!(inner(&run.text, "id=\"response_status-error\"").contains("response.status"));
    let attached = visitor
        .post(
            &format!("/console/plugins/{status}/attach"),
            &[("csrf", &csrf), ("as", "classify")],
        )
        .await;
    assert_eq!(attached.status, StatusCode::SEE_OTHER, "{}", attached.text);
    let saved = engine.settings(&partner).await;
    assert_eq!(saved["settings"]["classify_plugin"], status.as_str());
    assert_eq!(
        saved["settings"]["transform_plugin"],
        soap.as_str(),
        "the other role stays"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_dry_runs_count_as_tries_as_the_apis_do() {
    let engine = Engine::start_with(|options| options.tries_per_minute = Some(2)).await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = engine
        .partner_with("acme", &common::sample_settings(&receiver.url("/pb")))
        .await;
    let key = engine.partner_key(&partner).await;
    let upload = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name=nested", partner.id),
            Some(postwire_test_plugins::example_bytes("nested-json")),
        )
        .await;
    let plugin = upload.json["id"].as_str().unwrap().to_owned();
    let mut visitor = Visitor::new(&engine);
    let csrf = visitor.sign_in(&key).await.csrf();
    let run_path = format!("/console/plugins/{plugin}/run");
    // One try through the API, one through the page: the third, either way, is refused.
    let api = engine
        .post(&format!("/v1/partners/{}/plugins/{plugin}/run", partner.id), &json!({}))
        .await;
    assert_eq!(api.status, StatusCode::OK, "{api:?}");
    let page = visitor.post(&run_path, &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let refused = visitor.post(&run_path, &[("csrf", &csrf)]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.text);
    let api = engine
        .post(&format!("/v1/partners/{}/plugins/{plugin}/run", partner.id), &json!({}))
        .await;
    assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
    let detail = api.json["detail"].as_str().unwrap();
    let shown = detail.split("; try again").next().unwrap();
    assert!(
        refused.text.contains(&format!("Not run: {shown}")),
        "the API's message, {detail}, in {}",
        refused.text
    );
    // Bad pasted JSON is the form's own problem: it costs no try and says so beside the field.
    let bad = visitor.post(&run_path, &[("csrf", &csrf), ("event", "{")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("id=\"event-error\""));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_a_partner_and_sees_its_secret_once() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let mut visitor = Visitor::new(&engine);
    let page = visitor.sign_in(TOKEN).await;
    assert!(
        page.text.contains("action=\"/console/operator/partners\""),
        "{}",
        page.text
    );
    let csrf = page.csrf();

    let refused = visitor
        .post("/console/operator/partners", &[("name", "no token")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let long = "x".repeat(201);
    let invalid = visitor
        .post("/console/operator/partners", &[("csrf", &csrf), ("name", &long)])
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", invalid.text);
    assert!(
        inner(&invalid.text, "id=\"partner_name-error\"").contains("at most 200 bytes"),
        "{}",
        invalid.text
    );
    let listed = engine.get("/v1/partners").await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 0, "nothing created");

    let answer = visitor
        .post(
            "/console/operator/partners",
            &[("csrf", &csrf), ("name", "Globex <Corp>")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_no_inline(&answer);
    assert!(answer.text.contains("Globex &lt;Corp&gt;") && !answer.text.contains("Globex <Corp>"));
    let secret = inner(&answer.text, "<pre class=\"secret\"").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = engine.get("/v1/partners").await;
    let data = listed.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["name"], "Globex <Corp>");
    assert!(
        !listed.json.to_string().contains(&secret),
        "no listing shows the secret"
    );
    let again = visitor.get("/console/operator").await;
    assert!(!again.text.contains(&secret), "the secret is shown once");

    // The secret shown is the one postbacks are signed with.
    let partner = common::Partner {
        id: data[0]["id"].as_str().unwrap().to_owned(),
        secret: secret.clone(),
    };
    engine
        .put_settings(&partner, &simple_settings(&receiver.url("/pb")))
        .await;
    let delivery = engine.send_event(&created(&partner, "evt_globex", "inq-globex")).await;
    engine.wait_status(&partner, &delivery, "delivered").await;
    let hits = receiver.wait_hits(1).await;
    common::assert_signed(&hits[0], &secret, &delivery);
    engine.stop().await;
}

/// Uploads guest `guest` of the test plugins as the next version of `name`; its id.
async fn upload_version(engine: &Engine, partner: &common::Partner, name: &str, guest: &str) -> String {
    let answer = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name={name}", partner.id),
            Some(postwire_test_plugins::bytes(guest)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.json["id"].as_str().unwrap().to_owned()
}

/// The text of the table cell of class `class` after `from` in `text`.
fn cell_after<'a>(text: &'a str, from: &str, class: &str) -> &'a str {
    let at = text.find(from).unwrap_or_else(|| panic!("{from} in {text}"));
    inner(&text[at..], &format!("<td class=\"{class}\""))
}

/// A plugin's versions shipped from the console: `rollout@1` (`trivial`, the request unchanged)
/// attached, `rollout@2` (`foreign`, changes only events in a currency other than USD) diffed
/// against it with nothing sent, run as a canary (stopped, then promoted), rolled back, and
/// `rollout@3` (`panic`) detached as a canary. Every form is refused without the CSRF token,
/// and what each did is what the API says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_diffs_canaries_promotes_and_rolls_back_a_plugin_version() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Shipper").await;
    let key = engine.partner_key(&partner).await;
    let v1 = upload_version(&engine, &partner, "rollout", "trivial").await;
    upload_version(&engine, &partner, "another", "trivial").await;
    let v2 = upload_version(&engine, &partner, "rollout", "foreign").await;
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!("rollout@1");
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    let mut ids = Vec::new();
    for n in 0..10 {
        let mut event = created(&partner, &format!("evt_c{n}"), &format!("inq-c{n}"));
        event["data"]["Currency"] = json!(if n % 5 == 0 { "EUR" } else { "USD" });
        ids.push(engine.send_event(&event).await);
    }
    for id in &ids {
        engine.wait_status(&partner, id, "delivered").await;
    }
    assert_eq!(receiver.wait_hits(10).await.len(), 10);

    let mut visitor = Visitor::new(&engine);
    visitor.sign_in(&key).await;
    // The list keeps the versions of one name together, and says which one is attached.
    let list = visitor.get("/console/plugins").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_no_inline(&list);
    let (at1, at2, at_other) = (
        list.text.find("<td>rollout@1</td>").unwrap(),
        list.text.find("<td>rollout@2</td>").unwrap(),
        list.text.find("<td>another@1</td>").unwrap(),
    );
    assert!(at_other < at1 && at1 < at2, "{}", list.text);
    assert_eq!(inner(&list.text[at1..], "<td class=\"roles\""), "transform");
    assert_eq!(inner(&list.text[at2..], "<td class=\"roles\""), "-");
    assert!(list.text.contains(&format!("href=\"/console/plugins/{v2}/diff\"")));
    assert!(
        !list.text.contains("Roll back to the previous version"),
        "v1 has no earlier version"
    );

    // The version's page: the diff form with the API's default, the canary form with the API's.
    let page = visitor.get(&format!("/console/plugins/{v2}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_no_inline(&page);
    assert!(page.text.contains(&format!("action=\"/console/plugins/{v2}/diff\"")));
    assert!(
        page.text
            .contains("name=\"last\" type=\"number\" min=\"1\" max=\"500\" value=\"50\"")
    );
    for (field, default) in [
        ("share_percent", "5"),
        ("window_secs", "300"),
        ("margin_percent", "10"),
        ("min_calls", "10"),
    ] {
        assert!(
            page.text
                .contains(&format!("name=\"{field}\" inputmode=\"numeric\" value=\"{default}\"")),
            "{field}: {}",
            page.text
        );
    }
    let csrf = page.csrf();
    let diff_path = format!("/console/plugins/{v2}/diff");

    // The diff: refused without the token; then exactly the two events in euros change.
    let refused = visitor.post(&diff_path, &[("last", "10")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let diff = visitor.post(&diff_path, &[("csrf", &csrf), ("last", "10")]).await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.text);
    assert_secure_headers(&diff);
    assert_no_inline(&diff);
    assert!(diff.text.contains("<h1>Diff of rollout@2</h1>"), "{}", diff.text);
    for (class, count) in [
        ("diff-deliveries", "10"),
        ("diff-identical", "8"),
        ("diff-changed", "2"),
        ("diff-failed", "0"),
    ] {
        assert_eq!(inner(&diff.text, &format!("<dd class=\"{class}\"")), count, "{class}");
    }
    let api = engine
        .post(
            &format!("/v1/partners/{}/plugins/diff", partner.id),
            &json!({"candidate": v2, "last": 10}),
        )
        .await;
    let changed: Vec<&Value> = api.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "changed")
        .collect();
    assert_eq!(changed.len(), 2);
    assert_eq!(diff.text.matches("<article class=\"diff-delivery changed\"").count(), 2);
    for result in changed {
        assert!(diff.text.contains(result["delivery_id"].as_str().unwrap()));
    }
    assert_eq!(
        diff.text
            .matches("<li class=\"added\">+ added <code>x-foreign-currency: EUR</code></li>")
            .count(),
        2,
        "{}",
        diff.text
    );
    assert!(diff.text.contains("<pre class=\"unified-diff\"><span class=\"same\">--- attached</span>\n<span class=\"same\">+++ candidate</span>"), "{}", diff.text);
    assert!(
        diff.text
            .contains("<span class=\"add\">+  &quot;foreign&quot;: true,</span>"),
        "the body's diff, escaped: {}",
        diff.text
    );
    assert!(diff.text.contains("<table class=\"cost\">") && diff.text.contains("attached rollout@1"));
    assert_eq!(receiver.hits().len(), 10, "a diff sends nothing");
    // Its field's error beside it, the number as sent kept.
    let wrong = visitor.post(&diff_path, &[("csrf", &csrf), ("last", "100000")]).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.text);
    assert!(
        inner(&wrong.text, "id=\"last-error\"").contains("give a whole number from 1 to 500"),
        "{}",
        wrong.text
    );
    assert!(
        wrong
            .text
            .contains("value=\"100000\" aria-invalid=\"true\" aria-describedby=\"last-error\"")
    );

    // A canary: refused without the token; a field's error beside it; then started.
    let canary_path = format!("/console/plugins/{v2}/canary");
    let refused = visitor.post(&canary_path, &[("share_percent", "50")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = visitor
        .post(&canary_path, &[("csrf", &csrf), ("share_percent", "<b>all</b>")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.text);
    assert!(inner(&wrong.text, "id=\"share_percent-error\"").contains("give a whole number from 1 to 100"));
    assert!(wrong.text.contains("value=\"&lt;b&gt;all&lt;/b&gt;\"") && !wrong.text.contains("<b>all</b>"));
    let api_canary = format!("{}/canary", settings_path(&partner));
    assert_eq!(
        engine.get(&api_canary).await.status,
        StatusCode::NOT_FOUND,
        "nothing started"
    );
    let started = visitor
        .post(
            &canary_path,
            &[
                ("csrf", &csrf),
                ("share_percent", "50"),
                ("window_secs", ""),
                ("margin_percent", "20"),
                ("min_calls", ""),
            ],
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert!(
        started
            .text
            .contains("Canary started: rollout@2 serves 50% of first attempts beside rollout@1.")
    );
    let running = engine.get(&api_canary).await.json;
    assert_eq!(
        (
            &running["state"],
            &running["share_percent"],
            &running["window_ms"],
            &running["margin_percent"],
            &running["min_calls"]
        ),
        (&json!("running"), &json!(50), &json!(300_000), &json!(20), &json!(10)),
        "the API's defaults for the fields left empty: {running}"
    );
    let list = visitor.get("/console/plugins").await;
    assert_eq!(inner(&list.text, "<h2 id=\"canary-title\""), "Canary running");
    assert_eq!(inner(&list.text, "<dd class=\"canary-candidate\""), "rollout@2");
    assert!(inner(&list.text, "<dd class=\"canary-counts\"").starts_with("candidate 0 calls"));
    let at2 = list.text.find("<td>rollout@2</td>").unwrap();
    assert_eq!(inner(&list.text[at2..], "<td class=\"roles\""), "canary (transform)");

    // Stopped: refused without the token, then stopped as the API stops it.
    let stop_path = format!("/console/plugins/{v2}/canary/stop");
    assert_eq!(visitor.post(&stop_path, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(engine.get(&api_canary).await.json["state"], "running");
    let stopped = visitor.post(&stop_path, &[("csrf", &csrf)]).await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.text);
    assert!(
        stopped
            .text
            .contains("Canary of rollout@2 stopped: every postback runs rollout@1 again.")
    );
    assert_eq!(engine.get(&api_canary).await.json["state"], "stopped");
    assert!(inner(&stopped.text, "<p class=\"notice ok canary-ended\"").starts_with("Canary of rollout@2 stopped at "));
    let again = visitor.post(&stop_path, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.text.contains("has no canary running"), "{}", again.text);

    // Started again and promoted: rollout@2 is attached.
    let started = visitor
        .post(&canary_path, &[("csrf", &csrf), ("share_percent", "10")])
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    let promote_path = format!("/console/plugins/{v2}/canary/promote");
    assert_eq!(visitor.post(&promote_path, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(engine.get(&api_canary).await.json["state"], "running");
    let promoted = visitor.post(&promote_path, &[("csrf", &csrf)]).await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text);
    assert!(
        promoted
            .text
            .contains("Promoted: rollout@2 was attached in transform_plugin."),
        "{}",
        promoted.text
    );
    assert_eq!(engine.get(&api_canary).await.json["state"], "promoted");
    let attached = engine.get(&settings_path(&partner)).await.json;
    assert_eq!(attached["settings"]["transform_plugin"], v2, "{attached}");

    // The rollback button, where the attached version has an earlier one: from → to.
    let list = visitor.get("/console/plugins").await;
    assert_eq!(inner(&list.text, "<span class=\"from-to\""), "rollout@2 → rollout@1");
    let rollback_path = format!("/console/plugins/{v2}/rollback");
    assert!(list.text.contains(&format!("action=\"{rollback_path}\"")));
    let refused = visitor.post(&rollback_path, &[("slot", "transform")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let rolled = visitor
        .post(&rollback_path, &[("csrf", &csrf), ("slot", "transform")])
        .await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
    assert!(
        rolled
            .text
            .contains("Rolled back the transform: rollout@2 → rollout@1. The next postback runs rollout@1."),
        "{}",
        rolled.text
    );
    let attached = engine.get(&settings_path(&partner)).await.json;
    assert_eq!(attached["settings"]["transform_plugin"], v1, "{attached}");
    assert!(
        !rolled.text.contains("<span class=\"from-to\""),
        "no earlier version of rollout@1"
    );
    // Nothing earlier: the API's refusal above the form.
    let none = visitor
        .post(
            &format!("/console/plugins/{v1}/rollback"),
            &[("csrf", &csrf), ("slot", "transform")],
        )
        .await;
    assert_eq!(none.status, StatusCode::CONFLICT, "{}", none.text);
    assert!(
        none.text.contains("rollout@1 is the earliest version of rollout kept"),
        "{}",
        none.text
    );

    // A canary that fails is detached by the workers, and the page says so first of all.
    let v3 = upload_version(&engine, &partner, "rollout", "panic").await;
    // Its diff: every delivery failed, each with the candidate's error.
    let failing = visitor
        .post(
            &format!("/console/plugins/{v3}/diff"),
            &[("csrf", &csrf), ("last", "5")],
        )
        .await;
    assert_eq!(failing.status, StatusCode::OK, "{}", failing.text);
    assert_eq!(inner(&failing.text, "<dd class=\"diff-failed\""), "5");
    assert_eq!(
        failing.text.matches("<article class=\"diff-delivery failed\"").count(),
        5
    );
    assert_eq!(failing.text.matches("<pre class=\"candidate-error\">").count(), 5);
    assert!(
        inner(&failing.text, "<pre class=\"candidate-error\"").contains("panicked"),
        "{}",
        failing.text
    );
    let page = visitor.get(&format!("/console/plugins/{v3}")).await;
    let started = visitor
        .post(
            &format!("/console/plugins/{v3}/canary"),
            &[
                ("csrf", &page.csrf()),
                ("share_percent", "100"),
                ("window_secs", "1"),
                ("min_calls", "3"),
            ],
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    let mut more = Vec::new();
    for round in 0..2 {
        for n in 0..3 {
            let n = 10 + round * 3 + n;
            more.push(
                engine
                    .send_event(&created(&partner, &format!("evt_c{n}"), &format!("inq-c{n}")))
                    .await,
            );
        }
        for id in &more {
            engine.wait_status(&partner, id, "delivered").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let reason = eventually("the canary to be detached", async || {
        let canary = engine.get(&api_canary).await.json;
        (canary["state"] == "detached").then(|| canary["reason"].as_str().unwrap().to_owned())
    })
    .await;
    let list = visitor.get("/console/plugins").await;
    assert!(
        list.text.contains(
            "<div class=\"notice error canary-ended\" role=\"alert\"><p><strong>Canary of rollout@3 detached</strong>"
        ),
        "{}",
        list.text
    );
    assert!(list.text.contains(&html_escaped(&reason)), "the reason shown: {reason}");
    engine.stop().await;
}

/// `text` as the console escapes it.
fn html_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The operator's delivery rates: attempts per minute over the last 5 minutes and the last hour,
/// across partners and for each busy partner, as delivered, failed and retried. `Fine`'s
/// receiver accepts (6 delivered), `Flaky`'s answers 503 (each of its 6 postbacks tried, and
/// retried 5 s later: 12 retried, the next retry minutes away), `Gone`'s answers 410 (its one
/// postback failed, its endpoint disabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_delivery_rates_across_and_per_partner() {
    let engine = Engine::start().await;
    let ok = Receiver::always(Reply::ok("ok")).await;
    let busy = Receiver::always(Reply::status(503)).await;
    let gone = Receiver::always(Reply::status(410)).await;
    let fine = engine.create_partner("Fine <Co>").await;
    let flaky = engine.create_partner("Flaky").await;
    let ended = engine.create_partner("Gone").await;
    engine.put_settings(&fine, &simple_settings(&ok.url("/pb"))).await;
    engine.put_settings(&flaky, &simple_settings(&busy.url("/pb"))).await;
    engine.put_settings(&ended, &simple_settings(&gone.url("/pb"))).await;
    let mut visitor = Visitor::new(&engine);
    let page = visitor.sign_in(TOKEN).await;
    assert!(
        page.text.contains("No postbacks were attempted in the last hour."),
        "{}",
        page.text
    );

    let mut delivered = Vec::new();
    for n in 0..6 {
        delivered.push(
            engine
                .send_event(&created(&fine, &format!("evt_f{n}"), &format!("inq-f{n}")))
                .await,
        );
        engine
            .send_event(&created(&flaky, &format!("evt_b{n}"), &format!("inq-b{n}")))
            .await;
    }
    engine.send_event(&created(&ended, "evt_g0", "inq-g0")).await;
    for id in &delivered {
        engine.wait_status(&fine, id, "delivered").await;
    }
    busy.wait_hits(12).await;
    gone.wait_hits(1).await;
    let page = eventually("every attempt counted", async || {
        let page = visitor.get("/console/operator").await;
        let counted = page.text.find("Last 5 minutes</th>").is_some_and(|_| {
            cell_after(&page.text, "Last 5 minutes</th>", "retried") == "2.4"
                && cell_after(&page.text, "Last 5 minutes</th>", "failed") == "0.2"
        });
        counted.then_some(page)
    })
    .await;
    assert_no_inline(&page);
    assert!(page.text.contains("<h2>Delivery rates</h2>"));
    // Across partners: 6 delivered, 1 failed and 12 retried, over 5 minutes and over the hour.
    assert_eq!(cell_after(&page.text, "Last 5 minutes</th>", "delivered"), "1.2");
    assert_eq!(cell_after(&page.text, "Last hour</th>", "delivered"), "0.1");
    assert_eq!(cell_after(&page.text, "Last hour</th>", "failed"), "0.0");
    assert_eq!(cell_after(&page.text, "Last hour</th>", "retried"), "0.2");
    // Per partner, busiest first, named (escaped) with its id.
    let rows: Vec<String> = [(&flaky, "Flaky"), (&fine, "Fine &lt;Co&gt;"), (&ended, "Gone")]
        .iter()
        .map(|(partner, name)| format!("{name} <code>{}</code></th>", partner.id))
        .collect();
    let at: Vec<usize> = rows
        .iter()
        .map(|row| {
            page.text
                .find(row.as_str())
                .unwrap_or_else(|| panic!("{row} in {}", page.text))
        })
        .collect();
    assert!(at[0] < at[1] && at[1] < at[2], "busiest first: {}", page.text);
    let cells =
        |row: &str| ["delivered", "failed", "retried"].map(|class| cell_after(&page.text, row, class).to_owned());
    assert_eq!(cells(&rows[0]), ["0.0", "0.0", "0.2"], "Flaky over the hour");
    assert_eq!(cells(&rows[1]), ["0.1", "0.0", "0.0"], "Fine over the hour");
    assert_eq!(cells(&rows[2]), ["0.0", "0.0", "0.0"], "Gone over the hour");
    let recent = |row: &str| {
        let after = &page.text[page.text.find(row).unwrap()..];
        ["delivered", "failed", "retried"].map(|class| cell_after(after, "last 5 minutes</td>", class).to_owned())
    };
    assert_eq!(recent(&rows[0]), ["0.0", "0.0", "2.4"], "Flaky, last 5 minutes");
    assert_eq!(recent(&rows[2]), ["0.0", "0.2", "0.0"], "Gone, last 5 minutes");
    assert!(!page.text.contains("Fine <Co>"));
    engine.stop().await;
}
