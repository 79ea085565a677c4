//! The console in a real headless Chromium, driven through chromedriver (WebDriver), of a real
//! `postwire serve` process with a receiver on 127.0.0.1: sign in, a bad URL shows its field
//! error, fixed (a placeholder inserted by clicking it) and saved, a test postback shows the
//! receiver's answer, an example plugin uploaded and attached transforms the next one, and a
//! postback is found in the log; another example plugin uploaded through the file input is
//! dry-run on its page and attached with its button, and a postback of an event posted through
//! the API reaches the receiver as it transforms it. A partner signed in cannot reach another
//! partner's pages or data, by address or by a forged form. The operator creates a partner and
//! sees its signing secret once. A second version of a plugin is diffed against the attached
//! one on its diff page, driven by the keyboard. A screenshot of each page is saved under
//! `<target>/console-screenshots/`.
//!
//! Without `chromium` and `chromedriver` on the PATH (Debian packages `chromium` and
//! `chromium-driver`) these tests say that they were skipped; under CI (`CI` set) they must run.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::process::Process;
use common::{Answer, Partner, Receiver, Reply, created, simple_settings};
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// `chromedriver` and the browser it drives, if both are installed; under CI their absence
/// fails the test.
fn tools() -> Option<(PathBuf, Option<PathBuf>)> {
    let which = |name: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    let driver = which("chromedriver");
    let browser = which("chromium").or_else(|| which("google-chrome"));
    match (driver, browser) {
        (Some(driver), browser @ Some(_)) => Some((driver, browser)),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "chromium and chromedriver are not installed: under CI the browser tests must run (.ci/run installs them)"
            )
        }
        _ => {
            eprintln!(
                "skipped: the console's browser tests need chromium and chromedriver on the PATH \
                 (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// chromedriver on an ephemeral port of 127.0.0.1, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(path: &PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let start = Instant::now();
        while http.get(format!("{}/status", driver.url)).send().await.is_err() {
            assert!(start.elapsed() < common::DEADLINE, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `postwire serve` process on 127.0.0.1 with a SQLite file of its own, and the API
/// calls the tests make of it with the operator token.
struct Served {
    process: Process,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Served {
        Served::start_with(&[])
    }

    /// A `postwire serve` process with `more` arguments.
    fn start_with(more: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", dir.path().join("pw.db").display());
        let mut args = vec!["--database", &database, "--retry-schedule", common::SCHEDULE];
        args.extend_from_slice(more);
        let process = Process::start(&dir.path().join("engine.log"), &args);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Served {
            base: process.base.clone(),
            process,
            http,
            _dir: dir,
        }
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(common::TOKEN);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("the API answers: {e}\n{}", self.process.log_tail()));
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            json,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.raw(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.raw(reqwest::Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    async fn create_partner(&self, name: &str) -> Partner {
        let answer = self.post("/v1/partners", &json!({"name": name})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        Partner {
            id: answer.json["id"].as_str().unwrap().to_owned(),
            secret: answer.json["secret"].as_str().unwrap().to_owned(),
        }
    }

    async fn partner_with(&self, name: &str, settings: &Value) -> Partner {
        let partner = self.create_partner(name).await;
        let answer = self
            .raw(
                reqwest::Method::PUT,
                &common::settings_path(&partner),
                Some(settings.to_string().into_bytes()),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        partner
    }

    async fn partner_key(&self, partner: &Partner) -> String {
        let answer = self
            .post(&format!("/v1/partners/{}/keys", partner.id), &json!({}))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.json["token"].as_str().unwrap().to_owned()
    }

    async fn settings(&self, partner: &Partner) -> Value {
        let answer = self.get(&common::settings_path(partner)).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json
    }

    /// Posts an event that makes one delivery; returns its id.
    async fn send_event(&self, event: &Value) -> String {
        let answer = self.post("/v1/events", event).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
        answer.json["delivery_ids"][0].as_str().unwrap().to_owned()
    }

    async fn delivery(&self, partner: &Partner, delivery_id: &str) -> Value {
        let answer = self
            .get(&format!("/v1/partners/{}/deliveries/{delivery_id}", partner.id))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json
    }

    async fn wait_status(&self, partner: &Partner, delivery_id: &str, status: &str) -> Value {
        common::eventually(&format!("delivery {delivery_id}: status {status}"), async || {
            let delivery = self.delivery(partner, delivery_id).await;
            (delivery["delivery"]["status"] == status).then_some(delivery)
        })
        .await
    }
}

/// A headless browser session.
async fn browser(driver: &Driver, binary: Option<&PathBuf>) -> Client {
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1100", "--no-proxy-server"],
    });
    if let Some(binary) = binary {
        options["binary"] = json!(binary.display().to_string());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    // chromedriver listens on 127.0.0.1: plain HTTP.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Where screenshots go: `<target>/console-screenshots/`.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/debug/deps/<test binary>
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        });
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css`, waited for.
async fn text_of(client: &Client, css: &str) -> String {
    let start = Instant::now();
    loop {
        let element = client
            .wait()
            .at_most(common::DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} on the page: {e}"));
        match element.text().await {
            Ok(text) => return text,
            // Found on the page a click was leaving: read it again on the page that replaced it.
            Err(CmdError::Standard(e)) if e.error == ErrorStatus::StaleElementReference => {
                assert!(start.elapsed() < common::DEADLINE, "{css} kept going stale");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the text of {css}: {e}"),
        }
    }
}

async fn click(client: &Client, css: &str) {
    client
        .wait()
        .at_most(common::DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn fill(client: &Client, css: &str, text: &str) {
    let element = client.find(Locator::Css(css)).await.unwrap();
    element.clear().await.unwrap();
    element.send_keys(text).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_configures_tests_and_finds_a_postback_in_a_browser() {
    let Some((driver_path, binary)) = tools() else { return };
    let engine = Served::start();
    let receiver = Receiver::always(Reply::ok("thanks from the receiver")).await;
    let partner = engine.create_partner("Acme Shoes").await;
    let key = engine.partner_key(&partner).await;
    let driver = Driver::start(&driver_path).await;
    let client = browser(&driver, binary.as_ref()).await;
    let base = &engine.base;

    // Sign in.
    client.goto(&format!("{base}/console/settings")).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/console/sign-in"));
    shot(&client, "sign-in").await;
    fill(&client, "#key", &key).await;
    click(&client, "form[action='/console/sign-in'] button").await;
    assert_eq!(text_of(&client, "h1").await, "Event notifications");

    // A bad URL: its error beside the field.
    fill(&client, "#url", "ftp://partner.example/pb").await;
    fill(&client, "#body_template", "{\"order\": \"\"}").await;
    click(&client, "button[value='save']").await;
    let error = text_of(&client, "#url-error").await;
    assert!(
        error.contains("url:") && error.contains("ftp://partner.example/pb"),
        "{error}"
    );

    // Fixed, a placeholder inserted by clicking it, saved.
    fill(&client, "#url", &receiver.url("/pb")).await;
    fill(&client, "#body_template", "{\"order\": \"\"}").await;
    // Put the cursor between the quotes of "order": "", then click the placeholder.
    client
        .execute(
            "const b = document.getElementById('body_template'); b.focus(); b.setSelectionRange(11, 11);",
            vec![],
        )
        .await
        .unwrap();
    click(&client, "button.placeholder[data-insert='{OrderId}']").await;
    let preview = text_of(&client, "#preview pre.request").await;
    assert!(preview.contains(&format!("POST {}", receiver.url("/pb"))), "{preview}");
    click(&client, "button[value='save']").await;
    let notice = text_of(&client, ".notice.ok").await;
    assert!(notice.starts_with("Saved."), "{notice}");
    let saved = engine.settings(&partner).await;
    assert_eq!(saved["settings"]["body_template"], "{\"order\": \"{OrderId}\"}");
    assert_eq!(saved["settings"]["url"], receiver.url("/pb"));
    shot(&client, "settings").await;

    // A test postback shows the receiver's answer.
    click(&client, "nav a[href='/console/test']").await;
    click(&client, "form[action='/console/test'] button").await;
    let response = text_of(&client, "pre.response").await;
    assert!(
        response.contains("200") && response.contains("thanks from the receiver"),
        "{response}"
    );
    assert_eq!(text_of(&client, ".verdict").await, "success");
    shot(&client, "test-postback").await;
    let hits = receiver.wait_hits(1).await;
    assert_eq!(hits[0].json()["order"], "ORD-99812");

    // An example plugin uploaded from the page, attached on the settings page, and the
    // receiver gets the postback as it transforms it.
    click(&client, "nav a[href='/console/plugins']").await;
    fill(&client, "#name", "nested").await;
    let wasm = postwire_test_plugins::example_path("nested-json");
    client
        .find(Locator::Css("#wasm"))
        .await
        .unwrap()
        .send_keys(&wasm.display().to_string())
        .await
        .unwrap();
    click(&client, "form[enctype='multipart/form-data'] button").await;
    let notice = text_of(&client, ".notice.ok").await;
    assert!(notice.starts_with("Uploaded plg_"), "{notice}");
    assert!(text_of(&client, "table tbody tr").await.contains("transform"));
    shot(&client, "plugins").await;
    click(&client, "nav a[href='/console/settings']").await;
    client
        .find(Locator::Css("#transform_plugin"))
        .await
        .unwrap()
        .select_by_label("nested")
        .await
        .unwrap();
    click(&client, "button[value='save']").await;
    assert!(text_of(&client, ".notice.ok").await.starts_with("Saved."));
    click(&client, "nav a[href='/console/test']").await;
    click(&client, "form[action='/console/test'] button").await;
    assert_eq!(text_of(&client, ".verdict").await, "success");
    let hits = receiver.wait_hits(2).await;
    assert_eq!(hits[1].json()["inquiry"]["order_ref"], "ORD-99812", "{}", hits[1].body);

    // A real postback, found in the log and opened.
    let delivery = engine
        .send_event(&created(&partner, "evt_browser", "inq-browser"))
        .await;
    engine.wait_status(&partner, &delivery, "delivered").await;
    click(&client, "nav a[href='/console/log']").await;
    fill(&client, "#inquiry_id", "inq-browser").await;
    click(&client, "form.filters button").await;
    let row = text_of(&client, "table.log tbody tr").await;
    assert!(row.contains(&delivery) && row.contains("delivered"), "{row}");
    shot(&client, "postback-log").await;
    click(&client, &format!("a[href='/console/log/{delivery}']")).await;
    assert!(text_of(&client, ".attempt").await.contains("thanks from the receiver"));
    shot(&client, "postback").await;

    // Another example plugin, uploaded through the file input, dry-run on its page, attached
    // with its button; an event posted through the API reaches the receiver transformed.
    click(&client, "nav a[href='/console/plugins']").await;
    fill(&client, "#name", "soap").await;
    let wasm = postwire_test_plugins::example_path("soap-envelope");
    client
        .find(Locator::Css("#wasm"))
        .await
        .unwrap()
        .send_keys(&wasm.display().to_string())
        .await
        .unwrap();
    click(&client, "form[enctype='multipart/form-data'] button").await;
    let notice = text_of(&client, ".notice.ok").await;
    let soap = notice
        .strip_prefix("Uploaded ")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("the new plugin's id in {notice}"))
        .to_owned();
    click(&client, &format!("a[href='/console/plugins/{soap}']")).await;
    text_of(&client, "form.dry-run").await;
    assert_eq!(text_of(&client, "h1").await, "Plugin soap@1");
    // Pasted JSON that is not JSON: the error beside the field.
    fill(&client, "#event", "{\"id\": ").await;
    click(&client, "form.dry-run button[type='submit']").await;
    let error = text_of(&client, "#event-error").await;
    assert!(error.contains("is not JSON"), "{error}");
    // A sample resolved event, on the request the saved settings render.
    client
        .find(Locator::Css("#event"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    client
        .find(Locator::Css("#event_type"))
        .await
        .unwrap()
        .select_by_value("action_inquiry.resolved")
        .await
        .unwrap();
    click(&client, "form.dry-run button[type='submit']").await;
    let output = text_of(&client, "pre.request-out").await;
    assert!(
        output.contains("<soap:Envelope") && output.contains("action_inquiry.resolved"),
        "{output}"
    );
    let input = text_of(&client, "pre.request-in").await;
    assert!(input.contains(&format!("POST {}", receiver.url("/pb"))), "{input}");
    let fuel: u64 = text_of(&client, "dd.fuel").await.parse().unwrap();
    assert!(fuel > 0);
    shot(&client, "plugin-dry-run").await;
    click(&client, "form.attach button[value='transform']").await;
    let notice = text_of(&client, ".notice.ok").await;
    assert!(notice.starts_with("Attached as the transform"), "{notice}");
    assert_eq!(text_of(&client, "dd.attached").await, "transform");
    assert_eq!(
        engine.settings(&partner).await["settings"]["transform_plugin"],
        soap.as_str()
    );
    shot(&client, "plugin").await;
    let delivery = engine
        .send_event(&created(&partner, "evt_browser_soap", "inq-browser-soap"))
        .await;
    engine.wait_status(&partner, &delivery, "delivered").await;
    let hits = receiver.wait_hits(4).await;
    let soap_hit = hits
        .iter()
        .find(|hit| hit.webhook_id() == delivery)
        .expect("the receiver got the postback");
    assert!(
        soap_hit.body.starts_with("<?xml") && soap_hit.body.contains("<soap:Envelope"),
        "{}",
        soap_hit.body
    );
    assert!(
        soap_hit
            .body
            .contains("<ActionInquiryId>inq-browser-soap</ActionInquiryId>"),
        "{}",
        soap_hit.body
    );
    assert_eq!(soap_hit.header("content-type"), Some("text/xml; charset=utf-8"));

    // Signing out.
    click(&client, "form[action='/console/sign-out'] button").await;
    assert!(text_of(&client, ".notice.ok").await.contains("signed out"));
    client.close().await.unwrap();
    drop(driver);
    drop(engine);
}

/// The page's source, once its `<h1>` is there.
async fn source(client: &Client) -> String {
    text_of(client, "h1").await;
    client.source().await.unwrap()
}

/// Asserts that none of `secrets` is anywhere in the page's source.
async fn assert_hidden(client: &Client, secrets: &[&str], page: &str) -> String {
    let source = source(client).await;
    for secret in secrets {
        assert!(!source.contains(secret), "{secret} shown on {page}: {source}");
    }
    source
}

/// Submits a form built in the page (as another site's script or a tampered page would): the
/// page's own CSRF token and `fields`, posted to `action`; waits for the answer's page.
async fn forge(client: &Client, action: &str, fields: &[(&str, &str)]) {
    let before = client.find(Locator::Css("html")).await.unwrap();
    client
        .execute(
            "const [action, fields] = arguments; \
             const token = document.querySelector(\"input[name='csrf']\").value; \
             const form = document.createElement('form'); form.method = 'post'; form.action = action; \
             for (const [name, value] of [['csrf', token], ...fields]) { \
               const input = document.createElement('input'); input.type = 'hidden'; \
               input.name = name; input.value = value; form.appendChild(input); } \
             document.body.appendChild(form); form.submit();",
            vec![json!(action), json!(fields)],
        )
        .await
        .unwrap();
    // The old page goes stale once the answer's page replaces it.
    let start = Instant::now();
    while before.tag_name().await.is_ok() {
        assert!(
            start.elapsed() < common::DEADLINE,
            "no answer to the form posted to {action}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with(action.split('?').next().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_in_a_browser_cannot_reach_another_partners_pages_or_data() {
    let Some((driver_path, binary)) = tools() else { return };
    let engine = Served::start();
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let alpha_url = receiver.url("/alpha-receiver");
    let bravo_url = receiver.url("/bravo-private-receiver");
    let alpha = engine
        .partner_with("Alpha Outfitters", &simple_settings(&alpha_url))
        .await;
    let bravo = engine.partner_with("Bravo Trading", &simple_settings(&bravo_url)).await;
    let upload = async |partner: &Partner, name: &str| {
        let answer = engine
            .raw(
                reqwest::Method::POST,
                &format!("/v1/partners/{}/plugins?name={name}", partner.id),
                Some(postwire_test_plugins::example_bytes("soap-envelope")),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.json["id"].as_str().unwrap().to_owned()
    };
    upload(&alpha, "alpha-plugin").await;
    let bravo_plugin = upload(&bravo, "bravo-secret-plugin").await;
    let bravo_delivery = engine.send_event(&created(&bravo, "evt_bravo", "inq-bravo-4471")).await;
    engine.wait_status(&bravo, &bravo_delivery, "delivered").await;
    let bravo_settings = engine.settings(&bravo).await;
    let bravo_before = engine.delivery(&bravo, &bravo_delivery).await;
    let key = engine.partner_key(&alpha).await;
    let driver = Driver::start(&driver_path).await;
    let client = browser(&driver, binary.as_ref()).await;
    let base = &engine.base;

    client.goto(&format!("{base}/console/sign-in")).await.unwrap();
    fill(&client, "#key", &key).await;
    click(&client, "form[action='/console/sign-in'] button").await;
    assert_eq!(text_of(&client, "h1").await, "Event notifications");
    // Bravo's strings that no page of Alpha's may show.
    let secrets = [
        bravo_url.as_str(),
        "bravo-secret-plugin",
        bravo_plugin.as_str(),
        bravo_delivery.as_str(),
        "inq-bravo-4471",
        "Bravo Trading",
        bravo.id.as_str(),
    ];
    let own = assert_hidden(&client, &secrets, "the settings").await;
    assert!(own.contains(&alpha_url), "Alpha sees its own settings");

    // By address: Alpha's own pages list nothing of Bravo's; Bravo's ids are not found.
    for path in ["/console/log", "/console/plugins", "/console/test"] {
        client.goto(&format!("{base}{path}")).await.unwrap();
        assert_hidden(&client, &secrets, path).await;
    }
    client
        .goto(&format!("{base}/console/log/{bravo_delivery}"))
        .await
        .unwrap();
    assert_eq!(text_of(&client, "h1").await, "Not Found");
    assert_hidden(&client, &secrets, "Bravo's postback").await;
    shot(&client, "isolation-not-found").await;
    client
        .goto(&format!("{base}/console/plugins/{bravo_plugin}"))
        .await
        .unwrap();
    assert_eq!(text_of(&client, "h1").await, "Not Found");
    assert_hidden(&client, &secrets, "Bravo's plugin").await;
    // The log filtered by Bravo's ids: the filter shows what was typed, no postback of Bravo's.
    client
        .goto(&format!("{base}/console/log?inquiry_id=inq-bravo-4471"))
        .await
        .unwrap();
    let filtered = assert_hidden(
        &client,
        &[bravo_url.as_str(), bravo_delivery.as_str(), "bravo-secret-plugin"],
        "the log filtered by Bravo's inquiry",
    )
    .await;
    assert!(
        !filtered.contains("<table class=\"log\""),
        "no postback listed: {filtered}"
    );
    client
        .goto(&format!("{base}/console/log?order_id=ORD-99812"))
        .await
        .unwrap();
    assert_hidden(
        &client,
        &[bravo_url.as_str(), bravo_delivery.as_str()],
        "the log filtered by Bravo's order",
    )
    .await;
    for path in [
        "/console/operator".to_owned(),
        format!("/console/operator/partners/{}/keys", bravo.id),
    ] {
        client.goto(&format!("{base}{path}")).await.unwrap();
        assert_eq!(text_of(&client, "h1").await, "Forbidden", "{path}");
        assert_hidden(&client, &secrets, &path).await;
    }

    // By forged forms carrying Alpha's own token: refused or not found, and nothing of Bravo's
    // changes.
    client.goto(&format!("{base}/console/plugins")).await.unwrap();
    forge(
        &client,
        &format!("/console/plugins/{bravo_plugin}/attach"),
        &[("as", "transform")],
    )
    .await;
    assert_eq!(text_of(&client, "h1").await, "Not Found");
    assert_hidden(&client, &secrets, "attaching Bravo's plugin").await;
    client.goto(&format!("{base}/console/plugins")).await.unwrap();
    forge(
        &client,
        &format!("/console/plugins/{bravo_plugin}/run"),
        &[("event_type", "action_inquiry.created")],
    )
    .await;
    assert_eq!(text_of(&client, "h1").await, "Not Found");
    assert_hidden(&client, &secrets, "running Bravo's plugin").await;
    client.goto(&format!("{base}/console/log")).await.unwrap();
    forge(&client, &format!("/console/log/{bravo_delivery}/retry"), &[]).await;
    assert_eq!(text_of(&client, "h1").await, "Not Found");
    assert_hidden(&client, &secrets, "retrying Bravo's postback").await;
    client.goto(&format!("{base}/console/settings")).await.unwrap();
    forge(&client, "/console/operator/pick", &[("partner_id", &bravo.id)]).await;
    assert_eq!(text_of(&client, "h1").await, "Forbidden");
    assert_hidden(&client, &secrets, "picking Bravo").await;
    client.goto(&format!("{base}/console/settings")).await.unwrap();
    let still = assert_hidden(&client, &secrets, "the settings after the forged forms").await;
    assert!(still.contains(&alpha_url), "still Alpha's session");

    assert_eq!(
        engine.settings(&bravo).await,
        bravo_settings,
        "Bravo's settings did not change"
    );
    assert_eq!(
        engine.delivery(&bravo, &bravo_delivery).await,
        bravo_before,
        "Bravo's postback was not retried"
    );
    let plugins = engine.get(&format!("/v1/partners/{}/plugins", bravo.id)).await;
    assert_eq!(plugins.json["data"].as_array().unwrap().len(), 1);
    client.close().await.unwrap();
    drop(driver);
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_a_partner_in_a_browser() {
    let Some((driver_path, binary)) = tools() else { return };
    let engine = Served::start();
    let driver = Driver::start(&driver_path).await;
    let client = browser(&driver, binary.as_ref()).await;
    client.goto(&format!("{}/console/sign-in", engine.base)).await.unwrap();
    fill(&client, "#key", common::TOKEN).await;
    click(&client, "form[action='/console/sign-in'] button").await;
    text_of(&client, "form[action='/console/operator/partners']").await;
    assert_eq!(text_of(&client, "h1").await, "Operator");
    fill(&client, "#partner_name", "Globex Retail").await;
    click(&client, "form[action='/console/operator/partners'] button").await;
    let secret = text_of(&client, "pre.secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(text_of(&client, "table.partners tbody").await.contains("Globex Retail"));
    shot(&client, "operator").await;
    let listed = engine.get("/v1/partners").await;
    assert_eq!(listed.json["data"][0]["name"], "Globex Retail");
    // Shown once: the overview opened again has no secret.
    client.goto(&format!("{}/console/operator", engine.base)).await.unwrap();
    text_of(&client, "h1").await;
    assert!(!client.source().await.unwrap().contains(&secret));
    client.close().await.unwrap();
    drop(driver);
    drop(engine);
}

/// A plugin's second version diffed against the attached first on its diff page, the form sent
/// from the keyboard: `rollout@1` (`trivial`) is attached, `rollout@2` (`foreign`) changes only
/// the postbacks of events in euros, and the page shows exactly those, with nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_diffs_a_plugin_version_in_a_browser() {
    let Some((driver_path, binary)) = tools() else { return };
    // The browsers of the other tests share the machine: the plugins' speed is not what this
    // test is about, so a slow call must not fail the settings' save or the diff.
    let engine = Served::start_with(&["--plugin-deadline", "5s"]);
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Acme Rollouts").await;
    let key = engine.partner_key(&partner).await;
    let mut ids = Vec::new();
    for guest in ["trivial", "foreign"] {
        let answer = engine
            .raw(
                reqwest::Method::POST,
                &format!("/v1/partners/{}/plugins?name=rollout", partner.id),
                Some(postwire_test_plugins::bytes(guest)),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        ids.push(answer.json["id"].as_str().unwrap().to_owned());
    }
    let mut settings = common::sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!("rollout@1");
    let saved = engine
        .raw(
            reqwest::Method::PUT,
            &common::settings_path(&partner),
            Some(settings.to_string().into_bytes()),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    for n in 0..10 {
        let mut event = created(&partner, &format!("evt_diff{n}"), &format!("inq-diff{n}"));
        event["data"]["Currency"] = json!(if n % 5 == 0 { "EUR" } else { "USD" });
        let delivery = engine.send_event(&event).await;
        engine.wait_status(&partner, &delivery, "delivered").await;
    }
    assert_eq!(receiver.wait_hits(10).await.len(), 10);

    let driver = Driver::start(&driver_path).await;
    let client = browser(&driver, binary.as_ref()).await;
    let base = &engine.base;
    client.goto(&format!("{base}/console/sign-in")).await.unwrap();
    fill(&client, "#key", &key).await;
    click(&client, "form[action='/console/sign-in'] button").await;
    text_of(&client, "h1").await;
    client.goto(&format!("{base}/console/plugins")).await.unwrap();
    click(&client, &format!("a[href='/console/plugins/{}/diff']", ids[1])).await;
    assert_eq!(text_of(&client, "h1").await, "Diff of rollout@2");
    // The number of deliveries typed, and the form sent with Enter.
    let last = client.find(Locator::Css("#last")).await.unwrap();
    last.clear().await.unwrap();
    last.send_keys("10\u{E007}").await.unwrap();
    assert_eq!(text_of(&client, "dd.diff-changed").await, "2");
    assert_eq!(text_of(&client, "dd.diff-identical").await, "8");
    assert_eq!(text_of(&client, "dd.diff-deliveries").await, "10");
    let unified = text_of(&client, "pre.unified-diff").await;
    assert!(unified.starts_with("--- attached\n+++ candidate\n"), "{unified}");
    assert!(unified.contains("+  \"foreign\": true,"), "{unified}");
    let headers = text_of(&client, "ul.header-changes").await;
    assert!(headers.contains("x-foreign-currency: EUR"), "{headers}");
    shot(&client, "plugin-diff").await;
    assert_eq!(receiver.hits().len(), 10, "a diff sends nothing");
    // Back on the version's page: its canary form, with the API's defaults.
    click(&client, &format!("a[href='/console/plugins/{}']", ids[1])).await;
    assert_eq!(text_of(&client, "h1").await, "Plugin rollout@2");
    click(&client, "a.to-rollout").await;
    text_of(&client, "form.canary-form").await;
    let share = client.find(Locator::Css("#share_percent")).await.unwrap();
    assert_eq!(share.prop("value").await.unwrap().as_deref(), Some("5"));
    shot(&client, "plugin-rollout").await;
    client.close().await.unwrap();
    drop(driver);
    drop(engine);
}
