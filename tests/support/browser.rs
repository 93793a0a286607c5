//! Headless Chromium driven through chromedriver (WebDriver), for the web
//! console's tests. Debian's `chromium` and `chromium-driver`; `scripts/test`
//! installs them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::{free_port, skip_outside_ci, wait_until, DEADLINE};

/// A browser session and the chromedriver behind it.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    /// The console's base address, `http://127.0.0.1:port`.
    pub base: String,
}

/// Where the tests save what the pages looked like.
pub fn screenshot_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

impl Browser {
    /// A headless Chromium asking for `language` first, pointed at `base`;
    /// `None` (a skip, or a failure under CI) without chromedriver.
    pub fn start(base: &str, language: &str) -> Option<Browser> {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(driver) = driver else {
            skip_outside_ci("chromedriver is not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let status = format!("http://127.0.0.1:{port}/status");
        assert!(
            wait_until(|| super::client().get(&status).call().is_ok()),
            "chromedriver did not start"
        );
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", format!("--lang={language}")],
                "prefs": { "intl.accept_languages": language },
            }),
        );
        let client = runtime
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session");
        Some(Browser {
            driver,
            client: Some(client),
            runtime,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Opens `path` on the console.
    pub fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(self.client().goto(&url)).unwrap();
    }

    /// The path and query the browser is at.
    pub fn path(&self) -> String {
        let url = self.runtime.block_on(self.client().current_url()).unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The visible text of the first element matching `css`, waiting for it
    /// (a page being replaced may drop the element while it is read).
    pub fn text(&self, css: &str) -> String {
        let mut text = None;
        let found = wait_until(|| {
            text = self.try_text(css);
            text.is_some()
        });
        assert!(found, "no {css} on {}", self.path());
        text.unwrap_or_default()
    }

    fn try_text(&self, css: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    /// The `value` of the first field matching `css` once `done` accepts it,
    /// reading again until then: right after a submit the page may still be
    /// the old one, or have no such field yet. Panics with the last value.
    pub fn value_when(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let mut value = None;
        let found = wait_until(|| {
            value = self.runtime.block_on(async {
                let element = self.client().find(Locator::Css(css)).await.ok()?;
                element.prop("value").await.ok().flatten()
            });
            value.as_deref().is_some_and(&done)
        });
        assert!(found, "{css} on {} held {value:?}", self.path());
        value.unwrap_or_default()
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        self.runtime
            .block_on(self.client().find_all(Locator::Css(css)))
            .map_or(0, |all| all.len())
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub fn fill(&self, css: &str, text: &str) {
        self.runtime.block_on(async {
            let field = self.client().find(Locator::Css(css)).await.unwrap();
            field.clear().await.unwrap();
            field.send_keys(text).await.unwrap();
        })
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        self.runtime.block_on(async {
            let element = self
                .client()
                .wait()
                .at_most(DEADLINE)
                .for_element(Locator::Css(css))
                .await;
            element
                .unwrap_or_else(|e| panic!("no {css}: {e}"))
                .click()
                .await
                .unwrap();
        })
    }

    /// Makes the window `width` × `height` CSS pixels (headless: the viewport).
    pub fn resize(&self, width: u32, height: u32) {
        self.runtime
            .block_on(self.client().set_window_size(width, height))
            .unwrap();
    }

    /// Runs `script` in the page and returns its value.
    pub fn js(&self, script: &str) -> serde_json::Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap()
    }

    /// Runs `script`, which must call its last argument with the result.
    pub fn js_async(&self, script: &str) -> serde_json::Value {
        self.runtime
            .block_on(self.client().execute_async(script, Vec::new()))
            .unwrap()
    }

    /// Waits until the page's text contains `text`; panics with the page if it never does.
    pub fn wait_text(&self, text: &str) {
        let mut body = String::new();
        let found = wait_until(|| {
            body = self.try_text("body").unwrap_or_default();
            body.contains(text)
        });
        assert!(found, "never showed {text:?}:\n{body}");
    }

    /// Saves what the page looks like as `name.png` in [`screenshot_dir`].
    pub fn screenshot(&self, name: &str) {
        let png = self.runtime.block_on(self.client().screenshot()).unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
