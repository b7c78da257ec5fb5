//! The console end to end in headless Chromium: `iochub serve` on the shipped config and
//! samples, driven by `tests/e2e/console.mjs` (playwright-core with Debian's
//! `/usr/bin/chromium`). Screenshots land in `$CARGO_TARGET_DIR/console-screenshots/` (or
//! `target/console-screenshots/`); with `IOCHUB_UPDATE_SCREENSHOT=1` the overview's is copied to
//! `docs/console-overview.png`.
//!
//! A machine without Chromium fails this test with what to install; `IOCHUB_SKIP_BROWSER=1`
//! skips it explicitly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
const AGENCY_TOKEN: &str = "e2e-agency-token-0123456789";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("console-screenshots")
}

/// Ends the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_console_works_in_headless_chromium() {
    if std::env::var("IOCHUB_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("IOCHUB_SKIP_BROWSER=1: the browser test is skipped");
        return;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium chromium-driver), \
         or set IOCHUB_SKIP_BROWSER=1 to skip the browser test explicitly"
    );
    let e2e = repo().join("tests/e2e");
    if !e2e.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&e2e)
            .status()
            .expect("npm is needed for the browser test (apt-get install -y nodejs npm)");
        assert!(status.success(), "npm ci in tests/e2e failed");
    }

    let data = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_iochub"))
            .current_dir(repo())
            .args(["serve", "--data-dir"])
            .arg(data.path())
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--pg-addr", "127.0.0.1:0"])
            .env("IOCHUB_TOKEN_IOC_ADMIN", ADMIN_TOKEN)
            .env("IOCHUB_TOKEN_PHONG_TNMT", AGENCY_TOKEN)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iochub serve"),
    );
    let base = format!("http://127.0.0.1:{port}");

    // Wait for the first ingest of every pipeline: the overview is checked against it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = crate::common::client_with(ADMIN_TOKEN);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "the hub did not ingest the samples in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(r) = client.get(format!("{base}/api/v1/pipelines")).send().await else {
                continue;
            };
            let Ok(body) = r.json::<Value>().await else {
                continue;
            };
            // The seven scheduled pipelines over the samples (the push dataset of reports has
            // no schedule and is never run).
            let done = body["pipelines"].as_array().is_some_and(|ps| {
                let pulled: Vec<&Value> = ps.iter().filter(|p| !p["schedule"].is_null()).collect();
                pulled.len() == 7
                    && pulled
                        .iter()
                        .all(|p| !p["last_run"].is_null() && p["running"] == false)
            });
            if done {
                break;
            }
        }
    });

    let shots = screenshots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let output = Command::new("node")
        .arg("console.mjs")
        .current_dir(&e2e)
        .env("IOCHUB_BASE_URL", &base)
        .env("IOCHUB_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("IOCHUB_AGENCY_TOKEN", AGENCY_TOKEN)
        .env("IOCHUB_SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("node is needed for the browser test (apt-get install -y nodejs)");
    assert!(
        output.status.success(),
        "the browser scenario failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The README's picture of the overview is refreshed only when asked, so a test run
    // leaves the checkout as it was.
    if std::env::var_os("IOCHUB_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(
            shots.join("01-tong-quan.png"),
            repo().join("docs/console-overview.png"),
        )
        .expect("copy the overview screenshot to docs/");
    }
}
