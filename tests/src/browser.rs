//! Headless Chromium driven over WebDriver: a small client speaking HTTP/JSON
//! to a `chromedriver` the harness starts on a free loopback port (killed by
//! PID on drop, like every [`Child`]).
//!
//! Debian's `chromium` and `chromium-driver` packages are the peers; a
//! missing one is a test failure naming the package. The browser trusts the
//! console's self-signed certificate by its public key only
//! (`--ignore-certificate-errors-spki-list=<SHA-256 of the SPKI>`), never all
//! certificates. Downloads land in [`Browser::download_dir`]; screenshots go
//! to `<target>/test-artifacts/browser/NN-name.png`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::process::Child;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long element look-ups and waits poll by default.
pub const WAIT: Duration = Duration::from_secs(30);

fn missing(what: &str, package: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} not found: the browser tests need headless Chromium and its WebDriver; \
         run them through `bash tests/run.sh` or `apt-get install {package}`"
    )
}

/// How to start the browser.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// Prefix of the screenshot file names (`PREFIX-NN-name.png`), empty for
    /// plain `NN-name.png`.
    pub shot_prefix: String,
    /// A PEM certificate whose public key the browser trusts for TLS.
    pub trust_cert_pem: Option<PathBuf>,
}

/// One WebDriver session in headless Chromium.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Where the browser saves downloads.
    pub download_dir: PathBuf,
    artifacts: PathBuf,
    shot_prefix: String,
    shots: u32,
    _dir: tempfile::TempDir,
}

/// A found element (its WebDriver reference).
#[derive(Debug, Clone)]
pub struct Element(String);

/// The directory screenshots go to: `<target>/test-artifacts/browser`.
pub fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> -> target
    let target = exe
        .ancestors()
        .nth(3)
        .context("test executable is not inside a cargo target directory")?;
    Ok(target.join("test-artifacts").join("browser"))
}

/// Deletes the screenshots an earlier run with the same prefix left.
fn remove_old_shots(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().to_string();
        let rest = if prefix.is_empty() {
            Some(name.as_str())
        } else {
            name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-'))
        };
        let numbered = rest.is_some_and(|r| {
            r.len() > 3
                && r.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && r.as_bytes()[2] == b'-'
        });
        if numbered && name.ends_with(".png") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// `base64(SHA-256(SubjectPublicKeyInfo))` of the first certificate in a PEM
/// file: the form Chromium's `--ignore-certificate-errors-spki-list` takes.
pub fn spki_sha256_base64(pem: &str) -> anyhow::Result<String> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .context("certificate PEM is not base64")?;
    let spki = cert_spki(&der).context("certificate DER has no SubjectPublicKeyInfo")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki)))
}

/// One DER TLV at the start of `b`: (tag, header+content slice, content slice).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let whole = b.get(..hdr + len)?;
    Some((tag, whole, &whole[hdr..]))
}

/// Certificate ::= SEQ { tbs SEQ { [0] version?, serial, sigAlg, issuer,
/// validity, subject, spki, ... }, ... }
fn cert_spki(der: &[u8]) -> Option<&[u8]> {
    let (_, _, cert) = tlv(der)?;
    let (_, _, tbs) = tlv(cert)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (tag, whole, _) = tlv(rest)?;
        fields.push((tag, whole));
        rest = &rest[whole.len()..];
    }
    let skip = usize::from(fields.first()?.0 == 0xa0);
    fields.get(skip + 5).map(|(_, w)| *w)
}

/// Minimal HTTP/1.1 exchange with chromedriver (`Connection: close`).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to chromedriver on port {port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let (head, content) = read_response(&mut s)
        .with_context(|| format!("reading chromedriver's answer to {method} {path}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("chromedriver answered without a status code")?;
    let v: Value = serde_json::from_slice(&content).with_context(|| {
        format!(
            "chromedriver answered {method} {path} with non-JSON: {}",
            String::from_utf8_lossy(&content)
        )
    })?;
    if status >= 400 {
        let e = &v["value"];
        bail!(
            "webdriver {method} {path}: {} ({}): {}",
            e["error"].as_str().unwrap_or("error"),
            status,
            e["message"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    Ok(v["value"].clone())
}

/// One `read`, again when a signal interrupted it (the test process gets
/// `SIGCHLD` from the peers it starts).
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads one response: headers, then a `Content-Length` body, a chunked body,
/// or everything until the peer closes.
fn read_response(s: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = read_some(s, &mut buf)?;
        if n == 0 {
            bail!("connection closed before the headers ended");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut content = raw[split + 4..].to_vec();
    let lower = head.to_ascii_lowercase();
    let length = lower.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        if let Some(len) = length
            && content.len() >= len
        {
            content.truncate(len);
            break;
        }
        if chunked && content.windows(5).any(|w| w == b"0\r\n\r\n") {
            break;
        }
        let n = read_some(s, &mut buf)?;
        if n == 0 {
            break;
        }
        content.extend_from_slice(&buf[..n]);
    }
    if chunked {
        content = dechunk(&content)?;
    }
    Ok((head, content))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunked body")?;
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
            .context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        let data = b.get(eol + 2..eol + 2 + n).context("short chunk")?;
        out.extend_from_slice(data);
        b = b.get(eol + 4 + n..).unwrap_or_default();
    }
}

impl Browser {
    /// Starts chromedriver and one headless Chromium session.
    pub fn start(opts: BrowserOptions) -> anyhow::Result<Browser> {
        if !Path::new(CHROMIUM).is_file() {
            return Err(missing(CHROMIUM, "chromium"));
        }
        if !Path::new(CHROMEDRIVER).is_file() {
            return Err(missing(CHROMEDRIVER, "chromium-driver"));
        }
        let dir = tempfile::Builder::new().prefix("cpam-browser-").tempdir()?;
        let download_dir = dir.path().join("downloads");
        let profile_dir = dir.path().join("profile");
        std::fs::create_dir_all(&download_dir)?;
        std::fs::create_dir_all(&profile_dir)?;
        let artifacts = artifacts_dir()?;
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("creating {}", artifacts.display()))?;
        remove_old_shots(&artifacts, &opts.shot_prefix);

        let port = free_port()?;
        let mut c = Command::new(CHROMEDRIVER);
        c.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ));
        let mut driver = Child::spawn("chromedriver", c, dir.path())?;
        crate::wait_until(Duration::from_secs(20), "chromedriver to answer", || {
            http(port, "GET", "/status", None)
                .ok()
                .filter(|v| v["ready"].as_bool() == Some(true))
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", driver.logs()))?;
        if !driver.is_running() {
            bail!("chromedriver exited\n{}", driver.logs());
        }

        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--no-first-run".into(),
            "--window-size=1360,900".into(),
            format!("--user-data-dir={}", profile_dir.display()),
        ];
        if let Some(cert) = &opts.trust_cert_pem {
            let pem = std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            args.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                spki_sha256_base64(&pem)
                    .with_context(|| format!("certificate {}", cert.display()))?
            ));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": download_dir.display().to_string(),
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            },
        }}});
        let v = http(port, "POST", "/session", Some(&caps))
            .map_err(|e| anyhow::anyhow!("starting chromium: {e}\n{}", driver.logs()))?;
        let session = v["sessionId"]
            .as_str()
            .context("chromedriver returned no session id")?
            .to_string();
        let b = Browser {
            driver,
            port,
            session,
            download_dir,
            artifacts,
            shot_prefix: opts.shot_prefix,
            shots: 0,
            _dir: dir,
        };
        // Headless Chromium asks before downloading unless told where to save.
        b.cdp(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": b.download_dir.display().to_string()}),
        )?;
        Ok(b)
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// Navigates to `url`.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    /// Opens the console at `url` and waits for `ready` (a CSS selector).
    ///
    /// A fresh browser's first load has once been seen to stop at the shell's
    /// "Loading" text under a fully loaded machine; the page is then reloaded
    /// once, saying so on stderr, and must come up the second time.
    pub fn open_console(&self, url: &str, ready: &str) -> anyhow::Result<()> {
        self.goto(url)?;
        if self.find_within(ready, Duration::from_secs(15)).is_ok() {
            return Ok(());
        }
        eprintln!(
            "console at {url} did not start within 15 s (page: {:?}); reloading once",
            self.page_text()
        );
        self.refresh()?;
        self.find(ready)?;
        Ok(())
    }

    /// Reloads the page.
    pub fn refresh(&self) -> anyhow::Result<()> {
        self.cmd("POST", "/refresh", Some(json!({})))?;
        Ok(())
    }

    /// The current URL.
    pub fn url(&self) -> anyhow::Result<String> {
        Ok(self
            .cmd("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs an async `script`; it calls `arguments[arguments.length-1](result)`.
    pub fn execute_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Every element matching the CSS selector now (possibly none).
    pub fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_string())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether `el` is displayed.
    pub fn displayed(&self, el: &Element) -> bool {
        self.cmd("GET", &format!("/element/{}/displayed", el.0), None)
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// Waits for a displayed element matching `css`.
    pub fn find(&self, css: &str) -> anyhow::Result<Element> {
        self.find_within(css, WAIT)
    }

    /// Waits up to `timeout` for a displayed element matching `css`.
    pub fn find_within(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        crate::wait_until(timeout, &format!("element `{css}`"), || {
            self.find_all(css)
                .ok()?
                .into_iter()
                .find(|e| self.displayed(e))
        })
        .with_context(|| self.page_summary())
    }

    /// Whether a displayed element matches `css` right now.
    pub fn visible(&self, css: &str) -> bool {
        self.find_all(css)
            .map(|all| all.iter().any(|e| self.displayed(e)))
            .unwrap_or(false)
    }

    /// Clicks the displayed element matching `css` (retrying while another
    /// element is in the way).
    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        let mut last = None;
        crate::wait_until(WAIT, &format!("a click on `{css}`"), || {
            let el = self
                .find_all(css)
                .ok()?
                .into_iter()
                .find(|e| self.displayed(e))?;
            match self.cmd("POST", &format!("/element/{}/click", el.0), Some(json!({}))) {
                Ok(_) => Some(()),
                Err(e) => {
                    last = Some(e.to_string());
                    None
                }
            }
        })
        .with_context(|| format!("{}; last error: {last:?}", self.page_summary()))
    }

    /// Replaces the value of the input matching `css` with `text`.
    pub fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self.find(css)?;
        self.cmd("POST", &format!("/element/{}/clear", el.0), Some(json!({})))?;
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// Chooses the option with `value` in the `<select>` matching `css`.
    pub fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        self.click(&format!("{css} option[value=\"{value}\"]"))
    }

    /// The rendered text of the element matching `css`.
    pub fn text(&self, css: &str) -> anyhow::Result<String> {
        let el = self.find(css)?;
        Ok(self
            .cmd("GET", &format!("/element/{}/text", el.0), None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// A DOM property (e.g. `value`, `disabled`) of the element matching `css`.
    pub fn property(&self, css: &str, name: &str) -> anyhow::Result<Value> {
        let el = self.find(css)?;
        self.cmd("GET", &format!("/element/{}/property/{name}", el.0), None)
    }

    /// Waits until the text of the element matching `css` contains `needle`.
    pub fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        crate::wait_until(timeout, &format!("`{css}` to show `{needle}`"), || {
            let el = self
                .find_all(css)
                .ok()?
                .into_iter()
                .find(|e| self.displayed(e))?;
            let t = self
                .cmd("GET", &format!("/element/{}/text", el.0), None)
                .ok()?;
            let t = t.as_str()?.to_string();
            t.contains(needle).then_some(t)
        })
        .with_context(|| self.page_summary())
    }

    /// The page's visible text, for failure messages.
    pub fn page_text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : '';",
            json!([]),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    fn page_summary(&self) -> String {
        format!(
            "page {}:\n{}",
            self.url().unwrap_or_default(),
            self.page_text()
        )
    }

    /// Saves a PNG screenshot as `NN-name.png` in the artifacts directory.
    pub fn screenshot(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        self.shots += 1;
        let v = self.cmd("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            bail!("screenshot is not a PNG");
        }
        let file = if self.shot_prefix.is_empty() {
            format!("{:02}-{name}.png", self.shots)
        } else {
            format!("{}-{:02}-{name}.png", self.shot_prefix, self.shots)
        };
        let path = self.artifacts.join(file);
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Waits for a finished download whose name ends with `suffix`.
    pub fn wait_download(&self, suffix: &str, timeout: Duration) -> anyhow::Result<PathBuf> {
        // A file Chromium is still writing can show under its final name
        // empty or short: wait until it has bytes and stops growing.
        let mut last: Option<(PathBuf, u64)> = None;
        crate::wait_until(
            timeout,
            &format!("a complete download named *{suffix}"),
            || {
                let found = std::fs::read_dir(&self.download_dir)
                    .ok()?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().ends_with(suffix))?;
                let len = std::fs::metadata(&found).ok()?.len();
                let seen = last.replace((found.clone(), len));
                (len > 0 && seen == Some((found.clone(), len))).then_some(found)
            },
        )
    }

    /// chromedriver's captured output.
    pub fn logs(&self) -> String {
        self.driver.logs()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session stops Chromium; the driver is killed by its guard.
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}
