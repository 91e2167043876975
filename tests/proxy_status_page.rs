//! The admin status page as a browser renders it: headless Chromium loads `/status` from a
//! running `itsup proxy` with one healthy and one down cluster, runs the page's own script
//! (which refreshes the server table from `/servers`), and the dumped DOM is checked.

mod proxy_support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proxy_support::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// `chromium --headless --dump-dom URL`, with virtual time so the page's script (and the
/// fetch it starts) runs before the DOM is dumped. Bounded by `limit`.
fn dump_dom(browser: &str, url: &str, limit: Duration) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within {limit:?}");
            }
        }
    }
    reader.join().expect("reader thread")
}

/// The `<tr ...>...</tr>` of the server table row for `cluster/address`.
fn server_row<'a>(dom: &'a str, cluster: &str, address: &str) -> &'a str {
    let marker = format!("data-server=\"{cluster}/{address}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {cluster}/{address} in\n{dom}"));
    let start = dom[..at].rfind("<tr").expect("row start");
    let end = at + dom[at..].find("</tr>").expect("row end");
    &dom[start..end]
}

#[test]
fn status_page_renders_routes_and_health_in_headless_chromium() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED status_page_renders_routes_and_health_in_headless_chromium: chromium is not \
             installed (apt-get install chromium; .ci/setup.sh installs it)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let good = Upstream::start("good").await;
        let dead = dead_port();
        let config = format!(
            "{HEAD}routes:\n  - {{name: shop, host: shop.test, path: /api, cluster: healthy}}\n  - {{name: legacy, path: /old, cluster: broken}}\nclusters:\n  healthy:\n    servers: [{{address: '{}'}}]\n    health_check: {{path: /health, interval_ms: 100, timeout_ms: 200, rise: 1, fall: 1}}\n  broken:\n    servers: [{{address: '{}'}}]\n    health_check: {{path: /health, interval_ms: 100, timeout_ms: 200, rise: 1, fall: 1}}\n",
            good.addr, dead
        );
        let proxy = Proxy::start(&config);
        proxy
            .wait_for("the broken server marked down", Duration::from_secs(10), || async {
                proxy.servers().await.as_array().is_some_and(|list| {
                    list.iter()
                        .any(|s| s["address"] == dead.to_string() && s["up"] == false)
                })
            })
            .await;

        let url = format!("http://{}/status", proxy.admin);
        let dom = tokio::task::spawn_blocking(move || dump_dom(browser, &url, Duration::from_secs(90)))
            .await
            .expect("chromium thread");

        // Routes, as rendered.
        for needle in ["<td>shop</td>", "<td>shop.test</td>", "<td>/api</td>", "<td>legacy</td>", "<td>/old</td>", "<td>broken</td>"] {
            assert!(dom.contains(needle), "missing {needle} in\n{dom}");
        }
        // The page's script ran: it fetched /servers and rebuilt the table.
        assert!(dom.contains("live: 2 servers"), "script did not refresh the table:\n{dom}");
        let up = server_row(&dom, "healthy", &good.addr.to_string());
        assert!(up.contains("class=\"up\""), "{up}");
        assert!(up.contains("<td class=\"health\">up</td>"), "{up}");
        // Server-side rows print the admin state as `Ready`; the script writes the JSON value.
        assert!(up.contains("<td>ready</td>"), "row not written by the script: {up}");
        let down = server_row(&dom, "broken", &dead.to_string());
        assert!(down.contains("class=\"down\""), "{down}");
        assert!(down.contains("<td class=\"health\">down</td>"), "{down}");
    });
}
