// netvigil fleet dashboard. No inline script (CSP); all data goes into the page as text.
'use strict';

const $ = (id) => document.getElementById(id);

async function api(path, opts = {}) {
  const init = { credentials: 'same-origin', headers: {}, method: opts.method || 'GET' };
  if (opts.body !== undefined) {
    init.method = opts.method || 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, init);
  let j = null;
  try { j = await r.json(); } catch (_) { j = null; }
  if (r.status === 401 && !opts.quiet) showLogin();
  if (!r.ok) {
    const e = new Error((j && j.error) || ('HTTP ' + r.status));
    e.status = r.status;
    throw e;
  }
  return j;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, numeric = []) {
  const tr = document.createElement('tr');
  cells.forEach((c, i) => tr.appendChild(el('td', c, numeric.includes(i) ? 'num' : '')));
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function bytes(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
}

function when(ms) {
  if (!ms) return 'never';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

// ---- base64url for WebAuthn --------------------------------------------------------------
function b64urlToBuf(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out.buffer;
}
function bufToB64url(buf) {
  const a = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// ---- login -------------------------------------------------------------------------------
function showLogin(msg) {
  $('app').classList.add('hidden');
  $('who').classList.add('hidden');
  $('login').classList.remove('hidden');
  if (msg) $('login-status').textContent = msg;
  document.body.dataset.ready = '1';
  document.body.dataset.state = 'login';
}

async function showApp(me) {
  $('login').classList.add('hidden');
  $('app').classList.remove('hidden');
  $('who').classList.remove('hidden');
  $('who-name').textContent = me.user;
  document.body.dataset.state = 'app';
  await loadDevices();
  document.body.dataset.ready = '1';
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  $('login-status').textContent = 'checking…';
  try {
    const me = await api('/api/login', { body: { user: f.user.value, password: f.password.value }, quiet: true });
    f.password.value = '';
    $('login-status').textContent = '';
    await showApp(me);
  } catch (e) {
    $('login-status').textContent = e.message;
  }
});

$('passkey-login').addEventListener('click', async () => {
  const name = $('login-form').user.value.trim();
  $('login-status').textContent = 'waiting for the passkey…';
  try {
    const opts = await api('/api/passkey/login/begin', { body: name ? { user: name } : {}, quiet: true });
    const pk = opts.publicKey;
    pk.challenge = b64urlToBuf(pk.challenge);
    pk.allowCredentials = (pk.allowCredentials || []).map((c) => ({ type: c.type, id: b64urlToBuf(c.id) }));
    const cred = await navigator.credentials.get({ publicKey: pk });
    const me = await api('/api/passkey/login/finish', { quiet: true, body: {
      id: cred.id,
      clientDataJSON: bufToB64url(cred.response.clientDataJSON),
      authenticatorData: bufToB64url(cred.response.authenticatorData),
      signature: bufToB64url(cred.response.signature),
    } });
    $('login-status').textContent = '';
    await showApp(me);
  } catch (e) {
    $('login-status').textContent = 'passkey login failed: ' + e.message;
  }
});

$('logout').addEventListener('click', async () => {
  try { await api('/api/logout', { body: {}, quiet: true }); } catch (_) { /* already out */ }
  showLogin('logged out');
});

// ---- tabs ----------------------------------------------------------------------------------
document.querySelectorAll('.tab').forEach((t) => t.addEventListener('click', () => {
  document.querySelectorAll('.tab').forEach((x) => x.classList.toggle('active', x === t));
  document.querySelectorAll('.view').forEach((v) => v.classList.toggle('hidden', v.id !== 'view-' + t.dataset.view));
  const loaders = { fleet: loadFleet, patterns: loadPatterns, account: loadPasskeys, devices: loadDevices };
  const f = loaders[t.dataset.view];
  if (f) f().catch((e) => console.error(e));
}));

// ---- devices -------------------------------------------------------------------------------
async function loadDevices() {
  const j = await api('/api/devices');
  fill($('devices').tBodies[0], j.devices.map((d) => {
    const tr = row([d.device, d.name, when(d.last_seen_ms), d.flows, d.revoked ? 'revoked' : 'active'], [0, 3]);
    tr.dataset.device = d.device;
    if (d.revoked) tr.lastChild.className = 'revoked';
    return tr;
  }));
  const pick = $('device-picker');
  const cur = pick.value;
  const opts = [el('option', 'choose a device')];
  opts[0].value = '';
  for (const d of j.devices) {
    const o = el('option', d.device + ' · ' + d.name + (d.revoked ? ' (revoked)' : ''));
    o.value = String(d.device);
    opts.push(o);
  }
  pick.replaceChildren(...opts);
  pick.value = cur;
}

async function loadDevice() {
  const id = $('device-picker').value;
  document.body.dataset.device = '';
  if (!id) { $('device-view').classList.add('hidden'); return; }
  const w = $('device-window').value;
  const [apps, flows, alerts, lan] = await Promise.all([
    api('/api/devices/' + id + '/apps?window=' + w),
    api('/api/devices/' + id + '/flows?limit=200'),
    api('/api/devices/' + id + '/alerts?limit=50'),
    api('/api/devices/' + id + '/lan'),
  ]);
  fill($('device-lan').tBodies[0], lan.lan_devices.map((d) =>
    row([d.mac, d.vendor || (d.mac_private ? '(private address)' : ''), d.hostname || '', d.mdns_name || '',
      [...d.ipv4, ...d.ipv6].join(' '), when(d.last_seen_ms)])));
  $('device-lan-panel').classList.toggle('hidden', !lan.lan_devices.length);
  fill($('device-apps').tBodies[0], apps.apps.map((a) =>
    row([a.app, a.flows, bytes(a.bytes_in), bytes(a.bytes_out), a.remotes], [1, 2, 3, 4])));
  fill($('device-flows').tBodies[0], flows.flows.map((f) =>
    row([when(f.start_ms), f.app || '', f.proto, f.server, f.domain || '', f.org || '', f.country || '',
      bytes(f.bytes_to_client), bytes(f.bytes_to_server)], [7, 8])));
  $('device-alerts').replaceChildren(...alerts.alerts.map((a) => {
    const li = el('li');
    li.appendChild(el('span', a.severity, 'sev-' + a.severity));
    li.appendChild(document.createTextNode(' ' + when(a.ts_ms) + ' ' + a.reason));
    return li;
  }));
  if (!alerts.alerts.length) $('device-alerts').appendChild(el('li', 'no alerts', 'muted'));
  $('device-view').classList.remove('hidden');
  document.body.dataset.device = id;
}

$('device-picker').addEventListener('change', () => loadDevice().catch((e) => console.error(e)));
$('device-window').addEventListener('change', () => loadDevice().catch((e) => console.error(e)));

// ---- fleet ---------------------------------------------------------------------------------
function aggRows(list, label) {
  return list.map((r) => row([label(r), r.flows + ' flows', bytes(r.bytes_in + r.bytes_out), r.devices + ' dev'], [1, 2, 3]));
}

async function loadFleet() {
  const j = await api('/api/fleet/aggregates?window=' + $('fleet-window').value);
  $('fleet-note').textContent = j.flows + ' flows since ' + when(j.since_ms) +
    (j.truncated ? ' (organisations, countries and interfaces: the newest ' + j.placed_flows + ' only)' : '') +
    (j.places ? '' : ' · no place database installed: organisation and country are unknown');
  fill($('agg-device').tBodies[0], aggRows(j.by_device, (r) => r.key + (r.name ? ' · ' + r.name : '')));
  fill($('agg-app').tBodies[0], aggRows(j.by_app, (r) => r.key));
  fill($('agg-org').tBodies[0], aggRows(j.by_org, (r) => r.key + (r.asn ? ' (AS' + r.asn + ')' : '')));
  fill($('agg-country').tBodies[0], aggRows(j.by_country, (r) => r.key));
  fill($('agg-iface').tBodies[0], aggRows(j.by_iface, (r) => r.key));
  document.body.dataset.fleet = j.window;
}
$('fleet-window').addEventListener('change', () => loadFleet().catch((e) => console.error(e)));

async function loadPatterns() {
  const j = await api('/api/fleet/patterns?window=day&min_devices=3');
  const rows = j.patterns.map((p) => row([p.destination,
    p.devices.map((d) => d.name || d.device).join(', '), p.apps.join(', '), p.flows,
    (p.place && p.place.org) || '', (p.place && p.place.country) || ''], [3]));
  if (!rows.length) rows.push(row(['nothing seen from 3 devices or more']));
  fill($('patterns').tBodies[0], rows);
  document.body.dataset.patterns = String(j.patterns.length);
}

// ---- passkeys ------------------------------------------------------------------------------
async function loadPasskeys() {
  const j = await api('/api/passkeys');
  $('passkeys').replaceChildren(...j.passkeys.map((p) =>
    el('li', p.alg + ' · added ' + when(p.created_ms) + ' · last used ' + when(p.last_used_ms))));
  if (!j.passkeys.length) $('passkeys').appendChild(el('li', 'none yet', 'muted'));
  document.body.dataset.passkeys = String(j.passkeys.length);
}

$('passkey-add').addEventListener('click', async () => {
  $('passkey-status').textContent = 'waiting for the authenticator…';
  try {
    const opts = await api('/api/passkey/register/begin', { body: {} });
    const pk = opts.publicKey;
    pk.challenge = b64urlToBuf(pk.challenge);
    pk.user.id = b64urlToBuf(pk.user.id);
    pk.excludeCredentials = (pk.excludeCredentials || []).map((c) => ({ type: c.type, id: b64urlToBuf(c.id) }));
    const cred = await navigator.credentials.create({ publicKey: pk });
    await api('/api/passkey/register/finish', { body: {
      clientDataJSON: bufToB64url(cred.response.clientDataJSON),
      attestationObject: bufToB64url(cred.response.attestationObject),
    } });
    $('passkey-status').textContent = 'passkey added';
    await loadPasskeys();
  } catch (e) {
    $('passkey-status').textContent = 'could not add the passkey: ' + e.message;
  }
});

// ---- start ---------------------------------------------------------------------------------
api('/api/me', { quiet: true }).then(showApp, () => showLogin());
