//! The console in a real headless Chromium, driven through chromedriver (WebDriver): sign in, a
//! bad URL shows its field error, fixed (a placeholder inserted by clicking it) and saved, a
//! test postback shows the receiver's answer, an example plugin uploaded and attached
//! transforms the next one, and a postback is found in the log. A
//! screenshot of each page is saved under `<target>/console-screenshots/`.
//!
//! Without `chromium` and `chromedriver` on the PATH (Debian packages `chromium` and
//! `chromium-driver`) these tests say that they were skipped; under CI (`CI` set) they must run.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Engine, Receiver, Reply, created};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

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
    let element = client
        .wait()
        .at_most(common::DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"));
    element.text().await.unwrap()
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
    let engine = Engine::start().await;
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

    // Signing out.
    click(&client, "form[action='/console/sign-out'] button").await;
    assert!(text_of(&client, ".notice.ok").await.contains("signed out"));
    client.close().await.unwrap();
    drop(driver);
    engine.stop().await;
}
