//! A real headless Chromium for the console's tests, driven through
//! Debian's `chromedriver` with the W3C WebDriver protocol: JSON over
//! loopback HTTP, spoken with the `ureq` client the helper already links.
//! Only loopback traffic: the browser's background networking is off and
//! the pages it opens are the test server's.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::TestDir;

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a test waits for a condition before failing: generous, for a
/// busy two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A browser session; the driver and browser end when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _dir: TestDir,
}

/// A free loopback port (the driver binds it at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of a laptop's size.
    pub fn start(name: &str) -> Browser {
        let dir = TestDir::new(&format!("{name}-browser"));
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test installs it)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = dir.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            _dir: dir,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.try_call(method, path, body);
        if let Some(e) = v.get("error") {
            panic!("WebDriver {method} {path}: {e}: {}", v["message"]);
        }
        v
    }

    /// One WebDriver command; its `value`, an error object included.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let text = response
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn title(&self) -> String {
        self.call("GET", &self.s("/title"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The page's HTML as the browser holds it.
    pub fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// The first element `css` selects, if any.
    pub fn try_find(&self, css: &str) -> Option<String> {
        let v = self.try_call(
            "POST",
            &self.s("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// The first element `css` selects, waiting for it to appear.
    #[track_caller]
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} in {}:\n{}",
                self.url(),
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of the element `css` selects.
    #[track_caller]
    pub fn text(&self, css: &str) -> String {
        let Some(e) = self.try_find(css) else {
            return String::new();
        };
        self.try_call("GET", &self.s(&format!("/element/{e}/text")), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Types `text` into the field `css` selects.
    #[track_caller]
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/clear")),
            Some(json!({})),
        );
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks what `css` selects (a button submits its form and the
    /// next page loads).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/click")),
            Some(json!({})),
        );
    }

    /// Waits until `cond` holds, reloading the page between tries when
    /// `reload`; panics with `what` after [`PATIENCE`].
    #[track_caller]
    pub fn wait_until(&self, what: &str, reload: bool, mut cond: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "waited in vain for {what} at {}:\n{}",
                self.url(),
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(200));
            if reload {
                self.call("POST", &self.s("/refresh"), Some(json!({})));
            }
        }
    }

    /// A cookie as the browser holds it (`httpOnly`, `sameSite`, ...).
    pub fn cookie(&self, name: &str) -> Value {
        self.call("GET", &self.s(&format!("/cookie/{name}")), None)
    }

    /// Sets the window's size (a phone's: 390 × 844).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Saves a PNG of the viewport as `name.png` in the screenshot
    /// directory (beside the build: `target/console-screenshots/`); its
    /// path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", &self.s("/screenshot"), None);
        let png = {
            use ssh_encoding::base64::{Base64, Encoding};
            Base64::decode_vec(b64.as_str().expect("base64")).expect("base64")
        };
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", &self.s(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/console-screenshots/` of the build the tests run from.
pub fn screenshot_dir() -> PathBuf {
    let bin = Path::new(super::bin());
    // target/debug/sshjit -> target/
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("target"))
        .join("console-screenshots")
}
