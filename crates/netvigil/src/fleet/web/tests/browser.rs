//! The fleet dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`)
//! over HTTPS with the self-signed certificate, driven through chromedriver's WebDriver API
//! with a minimal client over std::net. Chromium talks only to loopback (a dead proxy for
//! everything else, background networking off).
//!
//! Walks: the login page, a wrong password, logging in, the devices table, picking a device
//! and seeing its flows, the fleet and patterns views, registering a passkey with
//! chromedriver's virtual authenticator (CTAP2, internal, resident keys), logging out and back
//! in with that passkey, and the phone-sized layout without horizontal overflow. Screenshots
//! at 1280x800 and 390x844 go to `$NETVIGIL_TEST_OUT` (default: a temp folder, printed).

// The same file as `crate::web::tests::browser::webdriver` (this test binary holds it twice,
// one copy per browser test module, rather than opening up the dashboard's private test tree).
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../../../tests/common/webdriver.rs"]
mod webdriver;

use serde_json::json;
use webdriver::Driver;

use super::{PASSWORD, SHARED, fleet, start, temp_dir};
use crate::fleet::web::auth::Limits;
use crate::fleet::web::tls;

const STATUS: &str = "return document.getElementById('login-status').textContent";

#[test]
fn fleet_dashboard_in_headless_chromium() {
    let out = webdriver::out_dir(temp_dir("screens"));
    let f = fleet();
    // Device 3 is a gateway: two LAN devices.
    super::write_lan(&mut store::SqliteStore::open(&f.dir.join(crate::fleet::db::RECORDS_FILE)).unwrap());
    let (h, _) = start(&f, Limits::default());
    let cert = tls::WebCert::load_or_create(&crate::fleet::web::web_dir(&f.dir), &[]).unwrap();
    let spki = cert.spki_sha256_base64().unwrap();
    let base = format!("https://localhost:{}", h.addr.port());
    let d = Driver::start_trusting(temp_dir("chromium-profile"), &spki);
    d.go(&format!("{base}/"));
    d.wait("return document.body.dataset.state === 'login'", "the login form");
    assert_eq!(d.js("return location.protocol"), json!("https:"));

    // A wrong password: stays on the login form with the reason.
    d.js("const f = document.getElementById('login-form'); f.user.value = 'alice'; f.password.value = 'not the password'; f.requestSubmit();");
    d.wait(
        &format!("{STATUS}.includes('wrong user name or password')"),
        "the refusal",
    );
    assert_eq!(d.js("return document.body.dataset.state"), json!("login"));
    // The right one.
    d.js(&format!(
        "const f = document.getElementById('login-form'); f.user.value = 'alice'; f.password.value = '{PASSWORD}'; f.requestSubmit();"
    ));
    d.wait("return document.body.dataset.state === 'app'", "the dashboard");
    // The session cookie is HttpOnly: the page's script cannot read it.
    assert_eq!(d.js("return document.cookie"), json!(""));
    d.wait(
        "return document.querySelectorAll('#devices tbody tr').length === 4",
        "the devices table",
    );
    assert_eq!(
        d.js(
            "return [...document.querySelectorAll('#devices tbody tr')].map(r => r.children[1].textContent)"
        ),
        json!(["laptop", "desktop", "pi", "old-phone"])
    );
    assert_eq!(
        d.js("return document.querySelector('#devices tbody tr:last-child td:last-child').textContent"),
        json!("revoked")
    );

    // Pick the laptop: its apps, flows (placed) and alert.
    d.js("const p = document.getElementById('device-picker'); p.value = '1'; p.dispatchEvent(new Event('change'));");
    d.wait("return document.body.dataset.device === '1'", "device 1");
    let rows = d.js("return [...document.querySelectorAll('#device-flows tbody tr')].map(r => [...r.children].map(c => c.textContent))");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r[4] == json!(SHARED) && r[5] == json!("Shady Hosting") && r[6] == json!("DE")),
        "{rows:?}"
    );
    assert_eq!(
        d.js("return document.querySelectorAll('#device-apps tbody tr').length"),
        json!(2)
    );
    assert!(
        d.js("return document.getElementById('device-alerts').textContent")
            .as_str()
            .unwrap()
            .contains("for the first time")
    );
    d.screenshot(&out.join("fleet-device-1280x800.png"));
    assert_eq!(
        d.js("return document.getElementById('device-lan-panel').classList.contains('hidden')"),
        json!(true),
        "no LAN devices panel for an agent that is not a gateway"
    );
    // The gateway: its LAN devices, the one seen last first.
    d.js("const p = document.getElementById('device-picker'); p.value = '3'; p.dispatchEvent(new Event('change'));");
    d.wait("return document.body.dataset.device === '3'", "device 3");
    let lan = d.js("return [...document.querySelectorAll('#device-lan tbody tr')].map(r => [...r.children].map(c => c.textContent))");
    let lan = lan.as_array().unwrap();
    assert_eq!(lan.len(), 2, "{lan:?}");
    assert_eq!(
        lan[0].as_array().unwrap()[..5],
        [
            json!("3c:22:fb:00:77:10"),
            json!("Apple, Inc."),
            json!("alices-iphone"),
            json!("Alices-iPhone.local"),
            json!("192.168.77.10")
        ]
    );
    assert_eq!(lan[1][0], json!("00:09:df:00:00:01"));
    assert_eq!(lan[1][5], json!("2026-01-01 00:00:00Z"));
    d.js("document.getElementById('device-lan-panel').scrollIntoView()");
    d.screenshot(&out.join("fleet-lan-devices-1280x800.png"));

    // Fleet view and patterns.
    d.js("document.querySelector('.tab[data-view=fleet]').click()");
    d.wait("return document.body.dataset.fleet === 'hour'", "the fleet view");
    assert!(
        d.js("return document.getElementById('agg-org').textContent")
            .as_str()
            .unwrap()
            .contains("Shady Hosting (AS64500)")
    );
    // The fixture's flows carry no capture interface.
    let by_iface = d.js("return document.getElementById('agg-iface').textContent");
    assert!(by_iface.as_str().unwrap().contains("(unknown)"), "{by_iface}");
    d.js("document.querySelector('.tab[data-view=patterns]').click()");
    d.wait(
        "return document.body.dataset.patterns !== undefined",
        "the patterns view",
    );
    let pat = d.js("return document.getElementById('patterns').textContent");
    assert!(pat.as_str().unwrap().contains(SHARED), "{pat}");
    assert!(pat.as_str().unwrap().contains("old.unlisted-dest.net"), "{pat}");
    d.screenshot(&out.join("fleet-patterns-1280x800.png"));

    // A passkey, with chromedriver's virtual authenticator.
    let auth_id = d.s(
        "webauthn/authenticator",
        Some(
            json!({"protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                    "hasUserVerification": true, "isUserVerified": true}),
        ),
        "POST",
    );
    assert!(auth_id.as_str().is_some(), "{auth_id}");
    d.js("document.querySelector('.tab[data-view=account]').click()");
    d.wait(
        "return document.body.dataset.passkeys === '0'",
        "the account view",
    );
    d.js("document.getElementById('passkey-add').click()");
    d.wait(
        "return document.getElementById('passkey-status').textContent !== 'waiting for the authenticator…'",
        "the passkey registration",
    );
    assert_eq!(
        d.js("return document.getElementById('passkey-status').textContent"),
        json!("passkey added")
    );
    d.wait(
        "return document.body.dataset.passkeys === '1'",
        "the passkey list",
    );
    let creds = d.s(
        &format!("webauthn/authenticator/{}/credentials", auth_id.as_str().unwrap()),
        None,
        "GET",
    );
    assert_eq!(creds.as_array().unwrap().len(), 1, "{creds}");
    let stored = crate::fleet::web::users::Users::open(&f.fleet_target)
        .get("alice")
        .unwrap()
        .unwrap();
    assert_eq!(stored.passkeys.len(), 1);
    assert_eq!(
        stored.passkeys[0].alg, -7,
        "Chromium's virtual authenticator makes ES256 keys"
    );

    // Log out; back in with the passkey (no user name: a discoverable credential).
    d.js("document.getElementById('logout').click()");
    d.wait("return document.body.dataset.state === 'login'", "logging out");
    d.js("document.getElementById('login-form').user.value = ''; document.getElementById('passkey-login').click()");
    d.wait(
        "return document.body.dataset.state === 'app'",
        "the passkey login",
    );
    d.js("window.__me = null; fetch('/api/me').then(r => r.json()).then(j => window.__me = j)");
    d.wait("return window.__me !== null", "/api/me");
    assert_eq!(d.js("return window.__me.method"), json!("passkey"));
    let after = crate::fleet::web::users::Users::open(&f.fleet_target)
        .get("alice")
        .unwrap()
        .unwrap();
    assert!(after.passkeys[0].last_used_ms.is_some());

    // Phone-sized: still logged in (the cookie), a device picked, no horizontal overflow.
    d.s(
        "goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setDeviceMetricsOverride",
                    "params": {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}})),
        "POST",
    );
    d.go(&format!("{base}/"));
    d.wait(
        "return document.body.dataset.state === 'app'",
        "the phone-sized load",
    );
    d.wait(
        "return document.querySelectorAll('#device-picker option').length === 5",
        "the device picker",
    );
    d.js("const p = document.getElementById('device-picker'); p.value = '2'; p.dispatchEvent(new Event('change'));");
    d.wait(
        "return document.body.dataset.device === '2'",
        "device 2 at 390 px",
    );
    assert_eq!(d.js("return window.innerWidth"), json!(390));
    let overflow = d.js("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow} px at 390 px"
    );
    d.screenshot(&out.join("fleet-device-390x844.png"));
    eprintln!("screenshots in {}", out.display());
    drop(d);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}
