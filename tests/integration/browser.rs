//! Headless chromium for the tests of the self-contained pages (`human_study`, `explain`):
//! Debian's `chromium` (`.ci/run` installs it), driven through the Chrome DevTools Protocol over
//! a websocket (`tungstenite`), with real `Input.dispatchKeyEvent` and `Input.dispatchMouseEvent`
//! events. Without chromium a browser test fails under CI (the variable CI is set) and is
//! skipped with a printed reason otherwise ([`chromium_binary`]).

use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The chromium to use: ADVMNIST_CHROMIUM, else `chromium` or `chromium-browser` on PATH.
/// `None` (with a printed reason) only outside CI; under CI a missing browser fails the test.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADVMNIST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI: no chromium on PATH; .ci/run installs Debian's chromium package")
        }
        None => {
            eprintln!("SKIPPED the browser test: no chromium on PATH (apt-get install chromium)");
            None
        }
    }
}

/// Headless chromium, spoken to through the DevTools protocol on one websocket, with one page
/// attached as a flat session.
pub struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    session: String,
    _profile: TempDir,
}

impl Browser {
    /// A browser whose downloads go to `downloads`, with page events enabled: what a page test
    /// that saves files starts from.
    pub fn launch_saving_to(binary: &Path, downloads: &Path) -> Browser {
        let mut b = Browser::launch(binary);
        b.browser_call(
            "Browser.setDownloadBehavior",
            serde_json::json!({"behavior": "allow", "downloadPath": downloads.to_str().unwrap()}),
        );
        b.call("Page.enable", serde_json::json!({}));
        b
    }

    pub fn launch(binary: &Path) -> Browser {
        use std::os::unix::process::CommandExt;
        let profile = TempDir::new().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,860",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so that Drop ends chromium's helpers with it.
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("chromium printed its DevTools address before exiting")
                .unwrap();
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_string();
            }
        };
        // Keep reading, so that chromium never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let host = url["ws://".len()..].split('/').next().unwrap().to_string();
        let stream = TcpStream::connect(&host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("websocket handshake");
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b
    }

    pub fn send(&mut self, session: Option<String>, method: &str, params: Value) -> Value {
        match self.try_send(session, method, params) {
            Ok(v) => v,
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// Sends one command and waits for its reply: its result, or the protocol's error.
    pub fn try_send(
        &mut self,
        session: Option<String>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let reply = self.ws.read().expect("a DevTools reply within 60 s");
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == json!(id) {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    pub fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(Some(s), method, params)
    }

    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is true (30 s at most). While a reload replaces the page,
    /// an exception or a protocol error (no execution context yet) counts as false.
    pub fn wait_for(&mut self, expression: &str) {
        let start = Instant::now();
        let guarded =
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return false; }} }})()");
        loop {
            let s = self.session.clone();
            let r = self.try_send(
                Some(s),
                "Runtime.evaluate",
                json!({"expression": guarded, "returnByValue": true}),
            );
            if matches!(r, Ok(ref v) if v["result"]["value"] == json!(true)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {expression}; progress: {}",
                self.eval("document.getElementById('progress')?.textContent")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A real key press: keyDown (with the text it types), then keyUp.
    pub fn press(&mut self, key: &str) {
        let (code, vk, text) = match key {
            "Enter" => ("Enter".to_string(), 13, "\r".to_string()),
            "Backspace" => ("Backspace".to_string(), 8, String::new()),
            "ArrowLeft" | "ArrowRight" | "Home" | "End" => {
                let vk = match key {
                    "ArrowLeft" => 37,
                    "ArrowRight" => 39,
                    "Home" => 36,
                    _ => 35,
                };
                (key.to_string(), vk, String::new())
            }
            d => (
                format!("Digit{d}"),
                48 + d.parse::<i64>().unwrap(),
                d.to_string(),
            ),
        };
        let mut down = json!({"type": "keyDown", "key": key, "code": code,
            "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk});
        if !text.is_empty() {
            down["text"] = json!(text);
            down["unmodifiedText"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}),
        );
    }

    /// A real mouse click at the centre of the element `selector`.
    pub fn click(&mut self, selector: &str) {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (r[0].as_f64().unwrap(), r[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// The mouse moved to `(x, y)`, in CSS pixels of the viewport (a `pointermove` on the
    /// element under it).
    pub fn mouse_move(&mut self, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x, "y": y}),
        );
    }

    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created for chromium alone.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
