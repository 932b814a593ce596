//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven through chromedriver's WebDriver HTTP API (`tests/common/webdriver.rs`).
//!
//! `dashboard_in_headless_chromium`: a view of hand-built connections and alerts, flows of a
//! shared capture in a real SQLite store, the health sampler on this machine's `/proc`. Asserts
//! the app cards and their counts, sort, search, the localhost toggle, info alerts hidden until
//! asked for, the IP popover and the connection detail (TCP facts, bytes chart), a record pushed
//! into the view appearing without a reload (SSE), the History view (per-app and per-host rows
//! equal to the store's), the Health view (interfaces, TCP counters, three charts drawn), dark
//! and light (computed colours differ, by the toggle and by `prefers-color-scheme`), the country
//! shown as flag or code, the settings form saving while a cross-origin POST is refused, and no
//! horizontal overflow at 390x844.
//!
//! `ten_thousand_rows_stay_responsive`: 10,000 connections; only the rows in view are in the
//! DOM, scrolling shows the right rows, filter and sort apply to all rows; the times to load,
//! render, filter and scroll are measured in the page (Performance API) and printed.
//!
//! Screenshots at 1280x800 and 390x844 go to `$NETVIGIL_TEST_OUT` (default: a temp folder,
//! printed).

#[allow(dead_code)]
#[path = "../../../tests/common/webdriver.rs"]
mod webdriver;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::Record;
use engine::judge::{Alert, Config, Rule, Severity};
use serde_json::{Value, json};
use webdriver::Driver;

use super::super::{Limits, LiveView, ServeOptions, ServerHandle, serve};
use super::{NOW, SECRET, assessment, capture_flows, filled_view, get_json, opened, process, temp_dir};

const CARDS: &str = "return [...document.querySelectorAll('details.app')].map(d => d.dataset.app)";

fn skip() -> bool {
    if std::env::var_os("NETVIGIL_SKIP_BROWSER").is_some() {
        eprintln!("NETVIGIL_SKIP_BROWSER set: browser test skipped");
        return true;
    }
    false
}

/// A server on a free loopback port; `sample`: the health sampler reads this machine's /proc.
fn serve_view(
    view: Arc<LiveView>,
    store: Option<PathBuf>,
    settings: Option<PathBuf>,
    sample: bool,
) -> ServerHandle {
    let mut o = ServeOptions::new(store, SECRET.into());
    o.addr = "127.0.0.1:0".parse().unwrap();
    o.settings_path = settings;
    o.sample_every = sample.then(|| Duration::from_millis(300));
    o.heartbeat = Duration::from_millis(300);
    serve(view, o).unwrap()
}

fn alert(id: &str, severity: Severity, rule: Rule, reason: &str) -> Alert {
    Alert {
        id: id.into(),
        ts: NOW,
        severity,
        rule,
        app: Some("firefox".into()),
        remote: Some("198.51.100.7".into()),
        port: Some(6667),
        bytes: None,
        score: Some(6),
        reason: reason.into(),
    }
}

/// The body's computed background colour.
const BG: &str = "return getComputedStyle(document.body).backgroundColor";

fn set(d: &Driver, id: &str, value: &str) {
    d.js(&format!(
        "const e = document.getElementById('{id}'); e.value = {}; e.dispatchEvent(new Event('input'));",
        json!(value)
    ));
}

#[test]
fn dashboard_in_headless_chromium() {
    if skip() {
        return;
    }
    let out = webdriver::out_dir(temp_dir("screens"));
    let cfg = temp_dir("browser-cfg");
    let settings = cfg.join("settings.json");

    // History: the flows of a shared capture in a real SQLite file.
    let (records, _) = capture_flows("ndpi__1kxun.pcap");
    let db = cfg.join("netvigil.db");
    let (mut t0, mut t1) = (i64::MAX, i64::MIN);
    for r in &records {
        if let Record::Flow(f) = r {
            t0 = t0.min(f.start);
            t1 = t1.max(f.end);
        }
    }
    {
        use store::Backend as _;
        let mut s = store::SqliteStore::open(&db).unwrap();
        let batch = store::Batch {
            records,
            ..store::Batch::default()
        };
        s.write_batch(&batch).unwrap();
    }

    let view = filled_view();
    // firefox's connection to 198.51.100.7 again 2 s later: a second byte sample.
    view.on_record(
        &opened(
            &process(100, "firefox", Some("firefox-esr")),
            "10.0.0.2:40003",
            "198.51.100.7:6667",
            (20, 120_000),
        ),
        &assessment(6, "Shady Hosting", None),
        NOW + 2_000_000_000,
    );
    view.on_alert(&alert(
        "00000000000000aa",
        Severity::High,
        Rule::RedFlag,
        "firefox talked to 198.51.100.7 on an unusual port",
    ));
    view.on_alert(&alert(
        "00000000000000bb",
        Severity::Info,
        Rule::NewRemote,
        "firefox talked to 198.51.100.7 for the first time",
    ));
    let srv = serve_view(view.clone(), Some(db.clone()), Some(settings.clone()), true);
    let base = format!("http://127.0.0.1:{}", srv.addr.port());
    let d = Driver::start(temp_dir("chromium-profile"));
    d.go(&format!("{base}/"));
    d.wait("return document.body.dataset.ready === '1'", "the first load");

    // Cards: localhost hidden by default, so firefox and curl.
    let mut cards: Vec<String> = serde_json::from_value(d.js(CARDS)).unwrap();
    cards.sort();
    assert_eq!(cards, ["curl", "firefox"]);
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("4")
    );
    assert_eq!(
        d.js("return document.getElementById('card-apps').textContent"),
        json!("2")
    );
    let ff = "document.querySelector('details.app[data-app=\"firefox\"]')";
    assert_eq!(
        d.js(&format!("return {ff}.querySelector('.app-count').textContent")),
        json!("3 connections")
    );
    assert_eq!(
        d.js(&format!("return {ff}.querySelector('.badge').textContent")),
        json!("high")
    );
    // Sort by score: firefox (6) first; by name: curl first.
    assert_eq!(d.js(CARDS)[0], json!("firefox"));
    set(&d, "sort", "name");
    assert_eq!(d.js(CARDS), json!(["curl", "firefox"]));
    // Localhost toggle.
    d.js("document.getElementById('show-local').click()");
    assert_eq!(d.js(CARDS), json!(["curl", "firefox", "postgres"]));
    d.js("document.getElementById('show-local').click()");
    // Search by organisation.
    set(&d, "search", "github");
    assert_eq!(d.js(CARDS), json!(["curl"]));
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("1")
    );
    set(&d, "search", "");

    // Alerts: the info one is hidden until "show info" is ticked.
    let alerts = "return [...document.querySelectorAll('#alerts li')].map(l => l.dataset.alert)";
    assert_eq!(d.js(alerts), json!(["00000000000000aa"]));
    assert!(
        d.js("return document.getElementById('alert-count').textContent")
            .as_str()
            .unwrap()
            .contains("1 info hidden")
    );
    d.js("document.getElementById('show-info').click()");
    assert_eq!(d.js(alerts), json!(["00000000000000aa", "00000000000000bb"]));
    d.js("document.getElementById('show-info').click()");
    assert_eq!(d.js(alerts), json!(["00000000000000aa"]));

    // Open firefox: its rows, the country as a flag or (without an emoji font) the code alone.
    d.js(&format!("{ff}.querySelector('summary').click()"));
    d.wait(
        &format!("return {ff}.querySelectorAll('tbody tr[data-id]').length === 3"),
        "firefox's rows",
    );
    let flags = d.js("return document.body.dataset.flags");
    let cc = d.js(&format!(
        "return {ff}.querySelector('tbody tr[data-id] td[data-label=country]').textContent"
    ));
    match flags.as_str() {
        Some("code") => assert_eq!(cc, json!("DE")),
        Some("emoji") => assert_eq!(cc, json!("\u{1f1e9}\u{1f1ea} DE")),
        other => panic!("flag detection did not run: {other:?}"),
    }
    // The IP popover.
    d.js(&format!(
        "[...{ff}.querySelectorAll('button.linkish')].find(b => b.textContent === '93.184.216.34').click()"
    ));
    d.wait(
        "const p = document.getElementById('popover'); return p.open && p.textContent.includes('Example Org') && p.textContent.includes('example.net')",
        "the IP popover",
    );
    assert!(
        d.js("return document.getElementById('pop-body').textContent")
            .as_str()
            .unwrap()
            .contains("Connections to it (1)")
    );
    d.js("document.getElementById('popover').close()");
    // The connection detail: from the red alert (its connection), then TCP facts and a chart.
    d.js("document.querySelector('#alerts li[data-alert=\"00000000000000aa\"]').click()");
    d.wait(
        "const p = document.getElementById('popover'); return p.open && p.textContent.includes('198.51.100.7:6667')",
        "the connection detail",
    );
    let body = d.js("return document.getElementById('pop-body').textContent");
    let body = body.as_str().unwrap();
    for want in [
        "12.0 ms ± 3.0",
        "firefox (pid 100)",
        "ESTABLISHED",
        "Bytes over time",
        "20 B / 120 KB",
    ] {
        assert!(body.contains(want), "connection detail lacks {want:?}: {body}");
    }
    // Two samples (the bytes at NOW and 2 s later): a line each for in and out.
    d.wait(
        "return document.querySelectorAll('#pop-body svg.chart path').length === 2",
        "the bytes chart of the connection (from /api/connection/{id})",
    );
    d.js("document.getElementById('popover').close()");
    d.screenshot(&out.join("dashboard-1280x800.png"));

    // SSE: a record pushed now shows up without a reload, under its app.
    d.js("window.__noReload = 42");
    let p = process(500, "wget", Some("wget"));
    view.on_record(
        &opened(&p, "10.0.0.2:41000", "203.0.113.9:80", (1, 2)),
        &assessment(3, "Test Net", None),
        NOW,
    );
    d.wait(
        "return !!document.querySelector('details.app[data-app=\"wget\"]')",
        "the pushed record",
    );
    assert_eq!(d.js("return window.__noReload"), json!(42));
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("5")
    );

    // Dark and light: the toggle flips the computed colours, and back.
    let light = d.js(BG);
    d.js("document.getElementById('theme').click()");
    let dark = d.js(BG);
    assert_ne!(light, dark, "the theme toggle must change the background");
    assert_eq!(
        d.js("return document.documentElement.dataset.theme"),
        json!("dark")
    );
    d.screenshot(&out.join("dashboard-dark-1280x800.png"));
    d.js("document.getElementById('theme').click()");
    assert_eq!(d.js(BG), light);

    // History: pick the capture's time range; per-app and per-host rows are the store's.
    d.js("document.querySelector('.tab[data-view=history]').click()");
    // The view first shows the last hour (nothing in it): wait for that, then ask for the range.
    d.wait(
        "return document.querySelectorAll('#history-out table').length === 3",
        "the default history range",
    );
    let from = (t0 / 1_000_000 - 120_000).to_string();
    let to = (t1 / 1_000_000 + 120_000).to_string();
    d.js(&format!(
        "document.getElementById('history-out').replaceChildren(); \
         document.getElementById('h-since').value = localInput({from}); \
         document.getElementById('h-until').value = localInput({to}); \
         document.getElementById('history-form').requestSubmit();"
    ));
    d.wait(
        "const t = document.querySelectorAll('#history-out table'); return t.length === 3 && t[1].tBodies[0].rows.length > 0",
        "the history tables",
    );
    let asked: String = serde_json::from_value(d.js(
        "return new URLSearchParams({since: new Date(document.getElementById('h-since').value).toISOString().replace(/\\.\\d+Z$/, 'Z'), \
         until: new Date(document.getElementById('h-until').value).toISOString().replace(/\\.\\d+Z$/, 'Z')}).toString()",
    ))
    .unwrap();
    let (st, hist) = get_json(srv.addr, &format!("/api/history?{asked}"));
    assert_eq!(st, 200, "{hist}");
    let tables: Vec<Vec<Vec<String>>> = serde_json::from_value(d.js(
        "return [...document.querySelectorAll('#history-out table')].map(t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent)))",
    ))
    .unwrap();
    let (apps, hosts) = (&tables[0], &tables[1]);
    let api_apps = hist["by_app"].as_array().unwrap();
    let api_hosts = hist["by_host"].as_array().unwrap();
    assert!(!api_hosts.is_empty(), "the store has hosts in that range");
    assert_eq!(apps.len(), api_apps.len());
    assert_eq!(hosts.len(), api_hosts.len());
    // A capture has no processes: one row, the unknown program, with every flow.
    assert_eq!(apps[0][0], "unknown program");
    assert_eq!(apps[0][1], api_apps[0]["flows"].as_u64().unwrap().to_string());
    for (row, want) in hosts.iter().zip(api_hosts) {
        assert_eq!(row[0], want["name"].as_str().unwrap());
        assert_eq!(row[1], want["flows"].as_u64().unwrap().to_string());
    }
    d.screenshot(&out.join("history-1280x800.png"));

    // Health: this machine's interfaces and TCP counters, three charts drawn.
    d.js("document.querySelector('.tab[data-view=health]').click()");
    d.wait_for(
        "return document.querySelectorAll('#ifaces tbody tr').length > 0 && document.querySelectorAll('#tcp tbody tr').length > 0 \
         && !!document.querySelector('#chart-bw svg path')",
        "the health view with a bandwidth line",
        20,
    );
    let ifaces: Vec<String> = serde_json::from_value(
        d.js("return [...document.querySelectorAll('#ifaces tbody tr')].map(r => r.cells[0].textContent)"),
    )
    .unwrap();
    assert!(ifaces.iter().any(|i| i == "lo"), "{ifaces:?}");
    let counters: Vec<String> = serde_json::from_value(
        d.js("return [...document.querySelectorAll('#tcp tbody tr')].map(r => r.cells[0].textContent)"),
    )
    .unwrap();
    assert!(counters.iter().any(|c| c == "Tcp.RetransSegs"), "{counters:?}");
    // Connection states (ESTABLISHED ...) and top talkers are bars.
    assert!(
        d.js("return document.querySelectorAll('#chart-states svg rect').length")
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(
        d.js("return document.querySelectorAll('#chart-talkers svg rect').length")
            .as_u64()
            .unwrap()
            >= 3
    );
    d.screenshot(&out.join("health-1280x800.png"));

    // prefers-color-scheme: dark without a saved choice gives the dark colours.
    d.js("localStorage.removeItem('nv-theme'); delete document.documentElement.dataset.theme;");
    d.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    assert_eq!(d.js(BG), dark, "prefers-color-scheme: dark");
    d.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    );
    assert_eq!(d.js(BG), light, "prefers-color-scheme: light");

    // The settings form saves (same origin, cookie) ...
    d.js("document.querySelector('.tab[data-view=settings]').click()");
    d.wait(
        "return document.querySelectorAll('#weights input').length > 5",
        "the settings form",
    );
    // (The form shows "saved in PATH" on load too: clear it so the wait is for this POST.)
    d.js("document.getElementById('settings-status').textContent = ''; const f = document.getElementById('settings-form'); f.refresh_interval_s.value = '10'; f.requestSubmit();");
    d.wait(
        "return document.getElementById('settings-status').textContent.startsWith('saved in')",
        "saving",
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(saved["refresh_interval_s"], 10);
    // ... and a POST from another origin (http://localhost:PORT is not http://127.0.0.1:PORT)
    // is refused: the browser sends it (no-cors) with the cookie, the server answers 403.
    std::fs::remove_file(&settings).unwrap();
    d.go(&format!("http://localhost:{}/", srv.addr.port()));
    d.wait(
        "return document.body.dataset.ready === '1'",
        "the page on localhost",
    );
    d.js(&format!(
        "window.__post = 'pending'; fetch('{base}/api/settings', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
         headers: {{'Content-Type': 'text/plain'}}, body: '{{\"refresh_interval_s\": 1}}'}}).then(() => window.__post = 'sent', () => window.__post = 'failed')"
    ));
    d.wait("return window.__post !== 'pending'", "the cross-origin POST");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!settings.exists(), "a cross-origin POST must not change settings");
    // The same origin still may: the POST is refused for its origin, not for being broken.
    d.js(
        "window.__same = 'pending'; fetch('/api/settings', {method: 'POST', headers: {'Content-Type': 'application/json'}, \
         body: '{\"refresh_interval_s\": 5}'}).then(r => window.__same = r.status, () => window.__same = 'failed')",
    );
    d.wait("return window.__same !== 'pending'", "the same-origin POST");
    assert_eq!(d.js("return window.__same"), json!(200));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(
        saved["refresh_interval_s"], 5,
        "only the same-origin POST may have written the settings"
    );

    // Phone-sized: no horizontal overflow, cards and rows still there.
    d.viewport(390, 844, true);
    d.go(&format!("{base}/"));
    d.wait(
        "return document.body.dataset.ready === '1'",
        "the phone-sized load",
    );
    d.js(&format!("{ff}.querySelector('summary').click()"));
    d.wait(
        &format!("return {ff}.querySelectorAll('tbody tr[data-id]').length === 3"),
        "rows at 390 px",
    );
    assert_eq!(d.js("return window.innerWidth"), json!(390));
    let overflow = d.js("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow} px at 390 px"
    );
    d.screenshot(&out.join("dashboard-390x844.png"));
    for view in ["history", "health", "settings", "help"] {
        d.js(&format!(
            "document.querySelector('.tab[data-view={view}]').click()"
        ));
        let overflow = d.js("return document.documentElement.scrollWidth - window.innerWidth");
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "horizontal overflow of {overflow} px at 390 px in {view}"
        );
    }
    d.screenshot(&out.join("help-390x844.png"));
    eprintln!("screenshots in {}", out.display());
    drop(d);
    srv.stop();
    let _ = std::fs::remove_dir_all(&cfg);
}

/// 10,000 connections: "bulk" has 5,000, 50 apps "app0".."app49" have 100 each.
fn ten_thousand() -> Arc<LiveView> {
    let v = LiveView::new(Config::default(), None, Limits::default());
    let add = |p: &engine::sockets::ProcessInfo, n: u32, i: u32, score: u32| {
        let remote = SocketAddr::new(IpAddr::from([198, 18, (n % 250) as u8, (i % 250) as u8]), 443);
        let local = format!("10.{}.{}.2:{}", n / 250, n % 250, 10_000 + i);
        v.on_record(
            &opened(p, &local, &remote.to_string(), (100 + u64::from(i), 100)),
            &assessment(score, &format!("Org {n}"), None),
            NOW + i64::from(i),
        );
    };
    let bulk = process(900, "bulk", None);
    for i in 0..5_000 {
        add(&bulk, 250, i, 0);
    }
    for app in 0..50u32 {
        let p = process(1000 + app, &format!("app{app}"), None);
        for i in 0..100 {
            add(&p, app, i, app % 4);
        }
    }
    v
}

/// Runs `script` (which changes the page), forces style and layout, and returns the time in ms
/// from the Performance API.
fn timed(d: &Driver, script: &str) -> f64 {
    d.js(&format!(
        "const t = performance.now(); {script}; void document.body.offsetHeight; return performance.now() - t;"
    ))
    .as_f64()
    .unwrap()
}

#[test]
fn ten_thousand_rows_stay_responsive() {
    if skip() {
        return;
    }
    let out = webdriver::out_dir(temp_dir("screens-10k"));
    let view = ten_thousand();
    assert_eq!(view.len(), 10_000);
    let srv = serve_view(view, None, None, false);
    let base = format!("http://127.0.0.1:{}", srv.addr.port());
    let d = Driver::start(temp_dir("chromium-profile-10k"));
    d.go(&format!("{base}/"));
    d.wait_for(
        "return document.body.dataset.ready === '1'",
        "the first load of 10,000 rows",
        60,
    );
    let load_ms = d
        .js("return performance.getEntriesByName('nv-ready')[0].startTime")
        .as_f64()
        .unwrap();
    let first_render = d
        .js("return performance.getEntriesByName('nv-render')[0].duration")
        .as_f64()
        .unwrap();
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("10000")
    );
    assert_eq!(
        d.js("return document.getElementById('card-apps').textContent"),
        json!("51")
    );

    // Open the card with 5,000 rows: only those in view (and a few around) are in the DOM.
    let bulk = "document.querySelector('details.app[data-app=\"bulk\"]')";
    d.js(&format!("{bulk}.querySelector('summary').click()"));
    d.wait(
        &format!("return {bulk}.querySelectorAll('tbody tr[data-id]').length > 0"),
        "bulk's rows",
    );
    let rows_in_dom = || {
        d.js("return document.querySelectorAll('tr[data-id]').length")
            .as_u64()
            .unwrap()
    };
    let n = rows_in_dom();
    assert!((5..=80).contains(&n), "{n} rows in the DOM for a card of 5,000");
    assert_eq!(
        d.js(&format!("return {bulk}.querySelector('.vscroll').dataset.rows")),
        json!("5000")
    );
    // The spacers make the box as tall as all the rows: the scroll height covers 5,000 rows.
    let (sh, row_h): (f64, f64) = serde_json::from_value(d.js(&format!(
        "const w = {bulk}.querySelector('.vscroll'); return [w.scrollHeight, w.querySelector('tr[data-id]').getBoundingClientRect().height]"
    )))
    .unwrap();
    assert!(
        sh >= 5_000.0 * row_h - 1.0,
        "scroll height {sh} for rows of {row_h} px"
    );
    // Same score, state and time: rows are in id order, row k has local port 10000 + k.
    // Scroll to row 2,500: the first row below the sticky header is that one.
    let scroll_ms = timed(
        &d,
        &format!(
            "const w = {bulk}.querySelector('.vscroll'); w.scrollTop = 2500 * {row_h}; w.dispatchEvent(new Event('scroll'))"
        ),
    );
    let top_id = d.js(&format!(
        "const w = {bulk}.querySelector('.vscroll'); const r = w.getBoundingClientRect(); \
         const h = w.querySelector('thead th').getBoundingClientRect().bottom; \
         return [...w.querySelectorAll('tr[data-id]')].find(tr => tr.getBoundingClientRect().bottom > h + 1 && tr.getBoundingClientRect().top < r.bottom).dataset.id"
    ));
    let dbg = d.js(&format!(
        "const w = {bulk}.querySelector('.vscroll'); const rs = [...w.querySelectorAll('tbody tr')];          return {{rowH: [...S.rowH], st: w.scrollTop, sh: w.scrollHeight, head: w.querySelector('thead').getBoundingClientRect().height,          hs: rs.slice(0, 4).map(r => r.getBoundingClientRect().height), last: rs[rs.length - 1].getBoundingClientRect().height, first: w._v.first}}"
    ));
    assert!(
        top_id.as_str().unwrap().contains(":12500|"),
        "the row in view after scrolling to row 2,500 is {top_id}: {dbg}"
    );
    assert!(
        rows_in_dom() <= 80,
        "still bounded after scrolling: {}",
        rows_in_dom()
    );
    d.js(&format!("{bulk}.scrollIntoView()"));
    d.screenshot(&out.join("10k-rows-1280x800.png"));

    // A filter applies to all 10,000 rows: "app7" matches app7's 100 only (apps go to app49).
    let filter_ms = timed(
        &d,
        "const q = document.getElementById('search'); q.value = 'app7'; q.dispatchEvent(new Event('input'))",
    );
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("100")
    );
    assert_eq!(d.js(CARDS), json!(["app7"]));
    let clear_ms = timed(
        &d,
        "const q = document.getElementById('search'); q.value = ''; q.dispatchEvent(new Event('input'))",
    );
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("10000")
    );
    // Sort over all rows: by connections, bulk first; by score, an app with score 3 first.
    let sort_ms = timed(
        &d,
        "const s = document.getElementById('sort'); s.value = 'conns'; s.dispatchEvent(new Event('input'))",
    );
    assert_eq!(d.js(CARDS)[0], json!("bulk"));
    assert!(rows_in_dom() <= 80, "bounded after a sort: {}", rows_in_dom());
    set(&d, "sort", "score");
    let top = d.js(CARDS)[0].as_str().unwrap().to_string();
    let k: u32 = top.trim_start_matches("app").parse().unwrap();
    assert_eq!(k % 4, 3, "a high-score app first, got {top}");

    // Phone-sized: the same bound, no horizontal overflow.
    d.viewport(390, 844, true);
    d.js("window.dispatchEvent(new Event('resize'))");
    let n = rows_in_dom();
    assert!((1..=40).contains(&n), "{n} rows in the DOM at 390 px");
    let overflow = d.js("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow} px at 390 px"
    );
    d.js(&format!("{bulk}.scrollIntoView()"));
    d.screenshot(&out.join("10k-rows-390x844.png"));
    eprintln!(
        "10,000 rows in Chromium: page ready at {load_ms:.0} ms, first render {first_render:.1} ms, \
         scroll {scroll_ms:.1} ms, filter {filter_ms:.1} ms, \
         clear {clear_ms:.1} ms, sort {sort_ms:.1} ms; rows in the DOM: {n}"
    );
    eprintln!("screenshots in {}", out.display());
    drop(d);
    srv.stop();
}
