//! A headless Chromium driven over the DevTools protocol, for tests of pages: open a URL, read
//! the page with JavaScript, take a screenshot, and collect every console error and uncaught
//! exception the page raised.
//!
//! The protocol runs over a pair of pipes (`--remote-debugging-pipe`: the browser reads
//! commands on descriptor 3 and writes answers and events on descriptor 4, each message JSON
//! ended by a NUL byte), so no port is opened and no WebSocket client is needed.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::process::TempDir;

/// What the tests need to run a browser.
pub const CHROMIUM: [(&str, &str); 1] = [("chromium", "chromium")];

/// How long one protocol command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// A running headless Chromium; killed when dropped.
pub struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    answers: Receiver<Value>,
    next_id: u64,
    problems: Arc<Mutex<Vec<String>>>,
    profile: TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and a window of `width` x `height` pixels.
    pub fn launch(width: u32, height: u32) -> std::io::Result<Self> {
        Self::launch_with(width, height, &[])
    }

    /// [`Browser::launch`] with more command-line switches (`--host-resolver-rules=...`).
    pub fn launch_with(width: u32, height: u32, switches: &[String]) -> std::io::Result<Self> {
        let program = crate::find_program("chromium").ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "chromium not found")
        })?;
        let profile = TempDir::new("chromium");
        let (command_reader, commands) = std::io::pipe()?;
        let (events, event_writer) = std::io::pipe()?;
        let mut cmd = Command::new(program);
        cmd.args([
            "--headless",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.path().display()),
        ]);
        cmd.args(switches);
        // Chromium's sandbox refuses to run as root, which CI is.
        if crate::is_root() {
            cmd.arg("--no-sandbox");
        }
        cmd.arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(profile.path().join("stderr.log"))?);
        let (read_fd, write_fd) = (command_reader.as_raw_fd(), event_writer.as_raw_fd());
        // SAFETY: only fcntl and dup2 run between fork and exec, both async-signal-safe. The
        // pipes are first copied above 3 and 4 (either may already sit on 3 or 4, where a
        // dup2 onto itself would keep its close-on-exec flag or clobber the other); dup2 then
        // leaves 3 and 4 open across exec.
        unsafe {
            cmd.pre_exec(move || {
                let read = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let write = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(command_reader);
        drop(event_writer);

        let problems = Arc::new(Mutex::new(Vec::new()));
        let (tx, answers) = channel();
        let seen = problems.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(events);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if value.get("id").is_some() {
                        if tx.send(value).is_err() {
                            return;
                        }
                    } else if let Some(problem) = problem(&value) {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(problem);
                    }
                }
                message.clear();
            }
        });
        Ok(Self {
            child,
            commands,
            answers,
            next_id: 0,
            problems,
            profile,
        })
    }

    /// Sends `method` (to the page of `session`, or to the browser) and waits for its result.
    pub fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .map_err(|e| format!("{method}: the browser is gone ({e}):\n{}", self.log()))?;
        let deadline = Instant::now() + COMMAND_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(answer) if answer["id"] == json!(id) => {
                    if let Some(error) = answer.get("error") {
                        return Err(format!("{method}: {error}"));
                    }
                    return Ok(answer["result"].clone());
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{method}: no answer within {COMMAND_DEADLINE:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{method}: the browser is gone:\n{}", self.log()));
                }
            }
        }
    }

    /// Opens `url` in a new tab and waits for its load event.
    pub fn open(&mut self, url: &str) -> Result<Page<'_>, String> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let target = target["targetId"]
            .as_str()
            .ok_or("no target id")?
            .to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(Some(&session), domain, json!({}))?;
        }
        let mut page = Page {
            browser: self,
            session,
        };
        let navigated = page.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = navigated.get("errorText") {
            return Err(format!("{url}: {error}"));
        }
        page.wait_for(
            Duration::from_secs(20),
            "document.readyState === 'complete'",
        )?;
        Ok(page)
    }

    /// What the browser wrote to its standard error (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("stderr.log")).unwrap_or_default()
    }

    /// Console errors and uncaught exceptions of every page so far.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event that a page test should fail on, in words.
fn problem(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            Some(format!(
                "uncaught exception: {} {}",
                details["text"].as_str().unwrap_or(""),
                details["exception"]["description"].as_str().unwrap_or("")
            ))
        }
        "Runtime.consoleAPICalled" if params["type"] == "error" || params["type"] == "assert" => {
            let args: Vec<String> = params["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    a["value"]
                        .as_str()
                        .map_or_else(|| a["description"].to_string(), str::to_owned)
                })
                .collect();
            Some(format!("console.error: {}", args.join(" ")))
        }
        "Log.entryAdded" if params["entry"]["level"] == "error" => Some(format!(
            "{}: {} {}",
            params["entry"]["source"].as_str().unwrap_or("log"),
            params["entry"]["text"].as_str().unwrap_or(""),
            params["entry"]["url"].as_str().unwrap_or("")
        )),
        _ => None,
    }
}

/// One tab.
pub struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
}

impl Page<'_> {
    /// Console errors and uncaught exceptions of every page of the browser so far.
    pub fn problems(&self) -> Vec<String> {
        self.browser.problems()
    }

    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.browser.call(Some(&session), method, params)
    }

    /// The value of the JavaScript `expression` (awaited when it is a promise).
    pub fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {e}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is true; how long that took.
    pub fn wait_for(&mut self, timeout: Duration, expression: &str) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if self.evaluate(expression)? == json!(true) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!("{expression} not true within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the whole page (beyond the window when it is taller).
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("screenshot: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}
