// netvigil dashboard: plain JS, no dependencies. Data: /api/* (docs/api.md), live updates over SSE.
'use strict';

const S = {
  conns: new Map(),      // id -> connection
  apps: new Map(),       // app name ('' for unknown) -> app facts (pids, packaged, cpu, rss)
  alerts: [],
  pending: [],           // SSE messages waiting for the next refresh
  paused: false,
  interval: 2,
  lastUpdate: null,
  open: new Set(),       // expanded app cards
  scroll: new Map(),     // app -> scroll offset of its rows (kept across renders)
  cardsShown: 100,       // app cards rendered (more on demand)
  rowH: new Map(),       // layout ('wide' | 'narrow') -> measured row height in px
  flags: null,           // can this browser draw flag emoji? (detected once)
  view: 'main',
  health: null,
};
const CARD_PAGE = 100;
const OVERSCAN = 6;      // rows rendered above and below the visible ones
const LEVELS = { clean: 0, low: 1, medium: 2, high: 3 };
const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}
const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0; let v = n;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + ' ' + u[i];
}
function rate(n) { return bytes(Math.round(n || 0)) + '/s'; }
function time(ms) { return ms ? new Date(ms).toLocaleTimeString() : '–'; }
function flagEmoji(cc) {
  return String.fromCodePoint(...[...cc.toUpperCase()].map((c) => 0x1f1e6 + c.charCodeAt(0) - 65));
}
// Flags are two regional-indicator letters drawn as one glyph by an emoji font. Without such a
// font they show as two boxes or letters: measure once and fall back to the country code alone.
function flagsDrawn() {
  if (S.flags === null) {
    try {
      const x = document.createElement('canvas').getContext('2d');
      x.font = '32px sans-serif';
      const pair = x.measureText(flagEmoji('DE')).width;
      const one = x.measureText(String.fromCodePoint(0x1f1e9)).width;
      S.flags = pair > 0 && pair < one * 1.5;
    } catch (_) { S.flags = false; }
    document.body.dataset.flags = S.flags ? 'emoji' : 'code';
  }
  return S.flags;
}
function country(cc) {
  if (!cc) return '–';
  if (cc.length !== 2 || !/^[A-Za-z]{2}$/.test(cc) || !flagsDrawn()) return cc;
  return flagEmoji(cc) + ' ' + cc;
}
async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin' });
  const j = await r.json().catch(() => ({ error: 'not JSON (' + r.status + ')' }));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

// ---------- data ----------
async function loadAll() {
  const [c, a] = await Promise.all([getJSON('/api/connections'), getJSON('/api/alerts')]);
  S.conns.clear();
  S.apps.clear();
  for (const app of c.apps) {
    S.apps.set(app.app || '', app);
    for (const conn of app.conns) S.conns.set(conn.id, conn);
  }
  S.alerts = a.alerts;
  S.digest = a.digest;
  S.lastUpdate = Date.now();
  render();
}

function applyPending() {
  if (!S.pending.length) return;
  let reload = false;
  for (const m of S.pending) {
    if (m.type === 'conn') S.conns.set(m.data.id, m.data);
    else if (m.type === 'alert') { S.alerts.unshift(m.data); S.alerts.length = Math.min(S.alerts.length, 1000); }
    else if (m.type === 'reload') reload = true;
  }
  S.pending = [];
  S.lastUpdate = Date.now();
  if (reload) loadAll().catch(showError); else render();
}

function connect() {
  const es = new EventSource('/api/events');
  const dot = $('live-dot');
  es.addEventListener('open', () => { dot.className = S.paused ? 'dot paused' : 'dot on'; });
  es.addEventListener('error', () => { dot.className = 'dot off'; });
  for (const type of ['conn', 'alert', 'reload']) {
    es.addEventListener(type, (e) => {
      let data = null;
      try { data = JSON.parse(e.data); } catch (_) { return; }
      S.pending.push({ type, data });
      if (S.pending.length > 20000) S.pending = [{ type: 'reload' }];
      if (S.interval === 1 && !S.paused) scheduleSoon();
    });
  }
  es.addEventListener('heartbeat', () => { showLast(); });
  es.addEventListener('health', () => { if (S.view === 'health') loadHealth(); });
}
let soon = null;
function scheduleSoon() { if (!soon) soon = setTimeout(() => { soon = null; applyPending(); }, 200); }

let timer = null;
function setInterval_(secs) {
  S.interval = secs;
  if (timer) clearInterval(timer);
  timer = secs > 0 ? setInterval(() => { if (!S.paused) applyPending(); }, secs * 1000) : null;
  $('interval').value = String(secs);
}
function showLast() {
  const t = S.lastUpdate ? 'updated ' + new Date(S.lastUpdate).toLocaleTimeString() : 'no update yet';
  $('last-update').textContent = S.paused ? 'paused (' + S.pending.length + ' waiting) · ' + t : t;
}

// ---------- main view ----------
function matches(c, words) {
  if (!words.length) return true;
  // The text searched is built once per connection object (an update replaces the object).
  if (c._hay === undefined) {
    Object.defineProperty(c, '_hay', {
      value: [c.app, c.domain, c.rdns, c.remote_ip, c.org, String(c.port), c.service, c.country].join(' ').toLowerCase(),
      enumerable: false,
    });
  }
  return words.every((w) => c._hay.includes(w));
}
function filtered() {
  const q = $('search').value.trim().toLowerCase();
  const words = q ? q.split(/\s+/) : [];
  const st = $('state-filter').value;
  const threat = $('threat-filter').value;
  const local = $('show-local').checked;
  const out = [];
  for (const c of S.conns.values()) {
    if (!local && c.loopback) continue;
    if (st === 'open' && !c.open) continue;
    if (st === 'closed' && c.open) continue;
    if (st && st !== 'open' && st !== 'closed' && c.state !== st) continue;
    if (threat && LEVELS[c.level] < LEVELS[threat]) continue;
    if (!matches(c, words)) continue;
    out.push(c);
  }
  return out;
}

function render() {
  performance.mark('nv-render-start');
  showLast();
  const conns = filtered();
  const groups = new Map();
  for (const c of conns) {
    const k = c.app || '';
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(c);
  }
  let tin = 0; let tout = 0;
  const apps = [];
  for (const [name, list] of groups) {
    const a = { name, list, in: 0, out: 0, score: 0, level: 'clean' };
    for (const c of list) {
      a.in += c.bytes_in; a.out += c.bytes_out;
      if (c.score > a.score) { a.score = c.score; }
      if (LEVELS[c.level] > LEVELS[a.level]) a.level = c.level;
    }
    tin += a.in; tout += a.out;
    apps.push(a);
  }
  const sort = $('sort').value;
  const key = {
    name: (a, b) => (a.name || '~').localeCompare(b.name || '~'),
    conns: (a, b) => b.list.length - a.list.length,
    in: (a, b) => b.in - a.in,
    out: (a, b) => b.out - a.out,
    score: (a, b) => b.score - a.score || b.list.length - a.list.length,
  }[sort];
  apps.sort(key);
  $('card-apps').textContent = apps.length;
  $('card-conns').textContent = conns.length;
  $('card-in').textContent = bytes(tin);
  $('card-out').textContent = bytes(tout);
  renderAlerts();
  // Cards are rendered a page at a time; rows inside an open card only where they are visible.
  const shown = apps.slice(0, S.cardsShown);
  const box = $('apps');
  box.replaceChildren(...shown.map(appCard));
  if (apps.length > shown.length) {
    box.append(h('button', { class: 'more', type: 'button', id: 'more-apps',
      onclick: () => { S.cardsShown += CARD_PAGE; render(); } },
    'show ' + Math.min(CARD_PAGE, apps.length - shown.length) + ' more apps of ' + (apps.length - shown.length)));
  }
  for (const w of box.querySelectorAll('.vscroll')) paintRows(w._v, true);
  $('empty').classList.toggle('hidden', apps.length > 0);
  performance.measure('nv-render', 'nv-render-start');
}

function renderAlerts() {
  const order = { high: 0, medium: 1, low: 2, info: 3 };
  // Info-level alerts (new app, new host...) are hidden unless asked for.
  const withInfo = $('show-info').checked;
  const info = S.alerts.filter((a) => a.severity === 'info').length;
  const list = S.alerts.filter((a) => withInfo || a.severity !== 'info')
    .sort((a, b) => order[a.severity] - order[b.severity] || b.ts_ms - a.ts_ms).slice(0, 100);
  const hidden = withInfo || !info ? '' : ', ' + info + ' info hidden';
  $('alert-count').textContent = S.alerts.length ? '(' + S.alerts.length + hidden + ')' : '— none';
  $('digest').textContent = S.digest ? 'Last ' + S.digest.period + ': ' + S.digest.text : '';
  $('alerts').replaceChildren(...list.map((a) => h('li', {
    class: a.severity, tabindex: '0', 'data-alert': a.id,
    onclick: () => { if (a.conn_id && S.conns.has(a.conn_id)) connDetail(S.conns.get(a.conn_id)); },
  }, h('b', {}, a.severity), ' ', time(a.ts_ms), ' · ', a.app || 'unknown program', ': ', a.reason)));
}

function appCard(a) {
  const meta = S.apps.get(a.name) || {};
  const label = a.name || 'unknown program';
  const open = S.open.has(a.name);
  const usage = [];
  if (meta.cpu_pct !== null && meta.cpu_pct !== undefined) usage.push('CPU ' + meta.cpu_pct.toFixed(1) + '%');
  if (meta.rss_bytes) usage.push('mem ' + bytes(meta.rss_bytes));
  const pkg = meta.packaged === true ? h('span', { title: 'from package ' + (meta.package || '') }, '✓ packaged')
    : meta.packaged === false ? h('span', { title: 'no installed package owns ' + (meta.exe || 'the executable') }, '✗ unpackaged') : null;
  const d = h('details', { class: 'app', 'data-app': label, open },
    h('summary', {},
      h('span', { class: 'app-name' }, label),
      h('span', { class: 'badge ' + a.level, title: 'highest score ' + a.score }, a.level),
      h('span', { class: 'app-stats' },
        h('span', { class: 'app-count' }, a.list.length + (a.list.length === 1 ? ' connection' : ' connections')),
        h('span', {}, '↓ ' + bytes(a.in)), h('span', {}, '↑ ' + bytes(a.out)),
        usage.length ? h('span', {}, usage.join(' · ')) : null, pkg)));
  d.addEventListener('toggle', () => {
    if (d.open) {
      S.open.add(a.name);
      if (d.children.length === 1) { const t = connTable(a); d.append(t); paintRows(t._v, true); }
    } else S.open.delete(a.name);
  });
  if (open) d.append(connTable(a));
  return d;
}

// Virtual scrolling: a card's rows live in a scroll box of bounded height; its table holds a
// spacer above, the rows in view (plus a few), and a spacer below. Rows have one height per
// layout (cells do not wrap), measured on the first paint, so a scroll offset maps to a row.
const COLS = ['host', 'IP', 'port', 'proto', 'state', 'organisation', 'country', '↓', '↑', 'score', 'flags', 'explanation'];
function layout() { return matchMedia('(max-width: 700px)').matches ? 'narrow' : 'wide'; }
function connTable(a) {
  const rows = [...a.list].sort((x, y) => y.score - x.score || Number(y.open) - Number(x.open) || y.last_seen_ms - x.last_seen_ms || (x.id < y.id ? -1 : 1));
  const tbody = h('tbody', {});
  const table = h('table', { class: 'conns' },
    h('thead', {}, h('tr', {}, COLS.map((x) => h('th', {}, x)))), tbody);
  const wrap = h('div', { class: 'vscroll', 'data-rows': String(rows.length), tabindex: '0', 'aria-label': 'connections of ' + (a.name || 'unknown program') }, table);
  const v = { name: a.name, rows, wrap, table, tbody, first: -1, last: -1 };
  wrap._v = v;
  wrap.addEventListener('scroll', () => { S.scroll.set(a.name, wrap.scrollTop); paintRows(v, false); }, { passive: true });
  return wrap;
}
function spacer(px) {
  const td = h('td', { colspan: String(COLS.length) });
  td.style.height = px + 'px';
  return h('tr', { class: 'spacer', 'aria-hidden': 'true' }, td);
}
// Renders the rows of `v` that are in view; `restore`: first paint of a new box (sizes it,
// measures the row height, puts back the scroll offset the card had).
function paintRows(v, restore) {
  if (!v || !v.wrap.isConnected) return;
  const lay = layout();
  let rowH = S.rowH.get(lay) || (lay === 'narrow' ? 240 : 29);
  const n = v.rows.length;
  if (restore) {
    const saved = S.scroll.get(v.name) || 0;
    v.first = -1;
    v.wrap.scrollTop = saved;
  }
  const head = v.table.tHead.offsetHeight;
  const view = v.wrap.clientHeight || 480;
  const top = Math.max(0, v.wrap.scrollTop - head);
  const first = Math.max(0, Math.min(n, Math.floor(top / rowH) - OVERSCAN));
  const last = Math.min(n, Math.ceil((top + view) / rowH) + OVERSCAN);
  if (first === v.first && last === v.last) return;
  v.first = first; v.last = last;
  v.tbody.replaceChildren(spacer(first * rowH), ...v.rows.slice(first, last).map(connRow), spacer((n - last) * rowH));
  const probe = v.tbody.rows[1];
  if (probe && probe.dataset.id) {
    const measured = probe.getBoundingClientRect().height;
    if (measured > 0 && Math.abs(measured - rowH) > 0.5) {
      S.rowH.set(lay, measured);
      rowH = measured;
      v.first = -1;
      paintRows(v, false);
    }
  }
}
addEventListener('resize', () => { for (const w of document.querySelectorAll('.vscroll')) { w._v.first = -1; paintRows(w._v, false); } });

function connRow(c) {
  const host = c.domain || c.rdns || (c.rdns_state === 'pending' ? 'looking up…' : 'no rDNS');
  const td = (label, ...kids) => h('td', { 'data-label': label }, ...kids);
  return h('tr', { class: c.open ? '' : 'closed', 'data-id': c.id },
    td('host', h('button', { class: 'linkish', type: 'button', title: host, onclick: () => connDetail(c) }, host)),
    td('IP', h('button', { class: 'linkish', type: 'button', onclick: () => ipDetail(c.remote_ip) }, c.remote_ip)),
    td('port', String(c.port) + (c.service ? ' ' + c.service : '')),
    td('proto', c.proto + (c.app_proto ? '/' + c.app_proto : '')),
    td('state', c.state || '–'),
    td('organisation', c.org || '–'),
    td('country', country(c.country)),
    h('td', { class: 'num', 'data-label': 'in' }, bytes(c.bytes_in)),
    h('td', { class: 'num', 'data-label': 'out' }, bytes(c.bytes_out)),
    td('score', h('span', { class: 'badge ' + c.level }, String(c.score))),
    h('td', { 'data-label': 'flags', title: c.flags.map((f) => f.kind + ' +' + f.points + ': ' + f.why).join('\n') || null },
      c.flags.map((f) => h('span', { class: 'flag', title: f.why }, f.kind + ' +' + f.points))),
    h('td', { 'data-label': 'explanation', title: c.explanation || null }, c.explanation || ''));
}

// ---------- popovers ----------
function kv(pairs) {
  return h('div', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('div', {}, k), h('div', {}, v === null || v === undefined || v === '' ? '–' : v)]));
}
function openPop(title, ...body) {
  $('pop-title').textContent = title;
  $('pop-body').replaceChildren(...body);
  const d = $('popover');
  if (!d.open) d.showModal();
}
function connDetail(c) {
  const chart = h('div', {}, h('span', { class: 'muted' }, 'loading…'));
  openPop(c.app ? c.app + ' → ' + (c.domain || c.remote_ip) : c.remote_ip,
    kv([
      ['local', c.local], ['remote', c.remote_ip + ':' + c.remote_port], ['direction', c.direction],
      ...(c.iface ? [['interface', c.iface]] : []),
      ['state', c.state], ['protocol', c.proto + (c.app_proto ? '/' + c.app_proto : '')],
      ['process', c.pid ? c.app + ' (pid ' + c.pid + ')' : 'unknown'],
      ['RTT', c.rtt_us !== null ? (c.rtt_us / 1000).toFixed(1) + ' ms ± ' + (c.rttvar_us / 1000).toFixed(1) : null],
      ['retransmits', c.retrans], ['lost', c.lost], ['cwnd', c.cwnd],
      ['queues (rx/tx)', c.rx_queue !== null ? c.rx_queue + ' / ' + c.tx_queue : null],
      ['bytes in/out', bytes(c.bytes_in) + ' / ' + bytes(c.bytes_out)],
      ['first / last seen', time(c.first_seen_ms) + ' / ' + time(c.last_seen_ms)],
      ['score', c.score + ' (' + c.level + ')'], ['explanation', c.explanation],
    ]),
    h('h3', {}, 'Bytes over time'), chart,
    h('p', {}, h('button', { type: 'button', class: 'linkish', onclick: () => ipDetail(c.remote_ip) }, 'About ' + c.remote_ip + ' →')));
  // The byte samples are not in the list: ask for this connection.
  getJSON('/api/connection/' + encodeURIComponent(c.id)).then((full) => {
    chart.replaceChildren(lineChart(full.samples.map((p) => [p[0], p[1], p[2]]), 'total'));
  }).catch((e) => chart.replaceChildren(h('span', { class: 'muted' }, e.message)));
}
async function ipDetail(ip) {
  openPop(ip, h('p', { class: 'muted' }, 'loading…'));
  try {
    const w = await getJSON('/api/whois/' + encodeURIComponent(ip));
    const spark = h('div', {}, h('span', { class: 'muted' }, 'history: loading…'));
    openPop(ip,
      kv([
        ['reverse DNS', w.rdns || (w.rdns_state === 'none' ? 'no PTR name' : w.rdns_state)],
        ['organisation', w.org], ['ASN', w.asn ? 'AS' + w.asn : null],
        ['place', [w.city, w.country ? country(w.country) : null].filter(Boolean).join(', ')],
        ['domains', w.domains.join(', ')], ['RDAP', w.rdap.note],
      ]),
      h('h3', {}, 'Connections to it (' + w.connections.length + ')'),
      h('ul', {}, w.connections.map((c) => h('li', {}, (c.app || 'unknown') + ' · ' + c.proto + ' ' + c.port + ' · ' + c.state + ' · ↓' + bytes(c.bytes_in) + ' ↑' + bytes(c.bytes_out)))),
      h('h3', {}, 'Last 24 hours'), spark);
    getJSON('/api/history?since=24h&host=' + encodeURIComponent(ip)).then((hist) => {
      spark.replaceChildren(lineChart(hist.timeline.map((t) => [t[0], t[2], t[3]]), 'rate', 60));
    }).catch((e) => spark.replaceChildren(h('span', { class: 'muted' }, e.message)));
  } catch (e) { openPop(ip, h('p', {}, e.message)); }
}

// ---------- charts (inline SVG) ----------
function lineChart(points, mode, height) {
  const W = 600; const H = height || 140; const P = 4;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img' });
  if (points.length < 2) { svg.append(s('text', { x: 8, y: H / 2 }, 'not enough data yet')); return svg; }
  const t0 = points[0][0]; const t1 = points[points.length - 1][0] || t0 + 1;
  const max = Math.max(1, ...points.map((p) => Math.max(p[1], p[2])));
  const x = (t) => P + (W - 2 * P) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => H - P - (H - 2 * P - 12) * v / max;
  for (const [i, color] of [[1, 'var(--chart-in)'], [2, 'var(--chart-out)']]) {
    const d = points.map((p, j) => (j ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[i]).toFixed(1)).join(' ');
    svg.append(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 2 }));
  }
  const lab = mode === 'rate' ? rate(max) : bytes(max);
  svg.append(s('text', { x: P + 2, y: 11 }, 'max ' + lab + '  (in: blue, out: orange)'));
  return svg;
}
function barChart(items) {
  const W = 600; const row = 22; const H = Math.max(row, items.length * row);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img' });
  if (!items.length) { svg.append(s('text', { x: 8, y: 14 }, 'nothing yet')); return svg; }
  const max = Math.max(1, ...items.map((i) => i.value));
  items.forEach((it, i) => {
    const w = Math.max(1, (W - 200) * it.value / max);
    svg.append(s('rect', { x: 140, y: i * row + 4, width: w.toFixed(1), height: row - 8, fill: 'var(--accent)', rx: 3 }));
    svg.append(s('text', { x: 4, y: i * row + 15 }, it.label.slice(0, 22)));
    svg.append(s('text', { x: 146 + w, y: i * row + 15 }, it.text));
  });
  return svg;
}

// ---------- health ----------
async function loadHealth() {
  try {
    const j = await getJSON('/api/health');
    const hh = j.health;
    $('chart-bw').replaceChildren(lineChart(hh ? hh.bandwidth : [], 'rate'));
    $('chart-states').replaceChildren(barChart(Object.entries(j.states).sort((a, b) => b[1] - a[1]).map(([k, v]) => ({ label: k, value: v, text: String(v) }))));
    $('chart-talkers').replaceChildren(barChart(j.top_talkers.map((t) => ({ label: t.app || 'unknown', value: t.bytes_in + t.bytes_out, text: bytes(t.bytes_in + t.bytes_out) }))));
    const ifs = hh ? hh.interfaces : [];
    $('ifaces').tBodies[0].replaceChildren(...ifs.map((i) => h('tr', {},
      h('td', {}, i.name), h('td', {}, i.speed_mbps ? i.speed_mbps + ' Mb/s' : '–'),
      h('td', { class: 'num' }, rate(i.rx_rate)), h('td', { class: 'num' }, rate(i.tx_rate)),
      h('td', { class: 'num' }, bytes(i.rx_bytes)), h('td', { class: 'num' }, bytes(i.tx_bytes)),
      h('td', { class: 'num' }, i.rx_packets), h('td', { class: 'num' }, i.tx_packets),
      h('td', { class: 'num' }, i.rx_errors + i.tx_errors), h('td', { class: 'num' }, i.rx_drops + i.tx_drops))));
    $('tcp').tBodies[0].replaceChildren(...j.counter_help.filter((c) => hh && c.name in hh.tcp).map((c) => h('tr', {},
      h('td', {}, c.name), h('td', { class: 'num' }, hh.tcp[c.name]),
      h('td', { class: 'num' }, hh.tcp_rates[c.name] !== undefined ? hh.tcp_rates[c.name].toFixed(1) : '–'), h('td', {}, c.what))));
    $('health-source').textContent = hh ? 'Source: ' + hh.source : 'No health sample yet.';
  } catch (e) { $('health-source').textContent = e.message; }
}

// ---------- history ----------
function localInput(ms) { const d = new Date(ms - new Date().getTimezoneOffset() * 60000); return d.toISOString().slice(0, 16); }
async function loadHistory(ev) {
  if (ev) ev.preventDefault();
  const p = new URLSearchParams();
  const since = $('h-since').value; const until = $('h-until').value;
  if (since) p.set('since', new Date(since).toISOString().replace(/\.\d+Z$/, 'Z'));
  if (until) p.set('until', new Date(until).toISOString().replace(/\.\d+Z$/, 'Z'));
  if ($('h-app').value) p.set('app', $('h-app').value);
  if ($('h-host').value) p.set('host', $('h-host').value);
  const out = $('history-out');
  out.replaceChildren(h('p', { class: 'muted' }, 'loading…'));
  try {
    const j = await getJSON('/api/history?' + p);
    const table = (title, rows) => [h('h3', {}, title), h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['name', 'flows', '↓', '↑'].map((x) => h('th', {}, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, r.name || 'unknown program'), h('td', { class: 'num' }, r.flows), h('td', { class: 'num' }, bytes(r.bytes_in)), h('td', { class: 'num' }, bytes(r.bytes_out)))))))];
    out.replaceChildren(
      h('h3', {}, 'Traffic per ' + j.grain), lineChart(j.timeline.map((t) => [t[0], t[2], t[3]]), 'total'),
      ...table('Per app', j.by_app), ...table('Per host', j.by_host),
      h('h3', {}, 'Alerts (' + j.alerts.length + ')'),
      h('ul', {}, j.alerts.map((a) => h('li', {}, time(a.ts_ms) + ' ' + a.severity + ' · ' + (a.app || '') + ': ' + a.reason))),
      h('h3', {}, 'Flows (newest ' + j.flows.length + ')'),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, ['start', 'app', 'server', 'domain', 'proto', '↑', '↓'].map((x) => h('th', {}, x)))),
        h('tbody', {}, j.flows.map((f) => h('tr', {}, h('td', {}, new Date(f.start_ms).toLocaleString()), h('td', {}, f.app || '–'), h('td', {}, f.server), h('td', {}, f.domain || '–'),
          h('td', {}, f.proto + (f.app_proto ? '/' + f.app_proto : '')), h('td', { class: 'num' }, bytes(f.bytes_to_server)), h('td', { class: 'num' }, bytes(f.bytes_to_client))))))));
  } catch (e) { out.replaceChildren(h('p', {}, e.message)); }
}

// ---------- settings ----------
async function loadSettings() {
  const f = $('settings-form');
  try {
    const j = await getJSON('/api/settings');
    const st = j.settings;
    f.refresh_interval_s.value = String(st.refresh_interval_s);
    $('weights').replaceChildren(...Object.entries(st.weights).map(([k, v]) => h('label', {}, k, h('input', { type: 'number', min: 0, max: 10, 'data-weight': k, value: v }))));
    f.t_low.value = st.thresholds.low; f.t_medium.value = st.thresholds.medium; f.t_high.value = st.thresholds.high;
    f.rdns_ttl_s.value = st.rdns_ttl_s; f.whois_ttl_s.value = st.whois_ttl_s;
    f.known_safe_apps.value = st.known_safe_apps.join('\n'); f.known_safe_hosts.value = st.known_safe_hosts.join('\n');
    f.known_safe_ports.value = st.known_safe_ports.join('\n');
    f.retention_days.value = st.retention_days; f.payload_sampling.checked = st.payload_sampling; f.sample_bytes.value = st.sample_bytes;
    $('settings-status').textContent = j.path ? 'saved in ' + j.path : '';
  } catch (e) { $('settings-status').textContent = e.message; }
}
async function saveSettings(ev) {
  ev.preventDefault();
  const f = $('settings-form');
  const lines = (t) => t.split('\n').map((x) => x.trim()).filter(Boolean);
  const weights = {};
  for (const i of $('weights').querySelectorAll('input')) weights[i.dataset.weight] = Number(i.value);
  const body = {
    refresh_interval_s: Number(f.refresh_interval_s.value), weights,
    thresholds: { low: Number(f.t_low.value), medium: Number(f.t_medium.value), high: Number(f.t_high.value) },
    rdns_ttl_s: Number(f.rdns_ttl_s.value), whois_ttl_s: Number(f.whois_ttl_s.value),
    known_safe_apps: lines(f.known_safe_apps.value), known_safe_hosts: lines(f.known_safe_hosts.value),
    known_safe_ports: lines(f.known_safe_ports.value).map(Number),
    retention_days: Number(f.retention_days.value), payload_sampling: f.payload_sampling.checked, sample_bytes: Number(f.sample_bytes.value),
  };
  const r = await fetch('/api/settings', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json().catch(() => ({}));
  $('settings-status').textContent = r.ok ? 'saved in ' + j.path : (j.error || 'failed');
  if (r.ok) setInterval_(body.refresh_interval_s);
}

// ---------- wiring ----------
function showView(v) {
  S.view = v;
  for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === v);
  for (const sec of document.querySelectorAll('.view')) sec.classList.toggle('hidden', sec.id !== 'view-' + v);
  if (v === 'health') loadHealth();
  if (v === 'settings') loadSettings();
  if (v === 'history' && !$('h-since').value) { $('h-since').value = localInput(Date.now() - 3600e3); loadHistory(); }
}
function showError(e) { $('last-update').textContent = 'error: ' + e.message; }

document.addEventListener('DOMContentLoaded', () => {
  const saved = localStorage.getItem('nv-theme');
  if (saved) document.documentElement.dataset.theme = saved;
  $('theme').addEventListener('click', () => {
    const dark = document.documentElement.dataset.theme ? document.documentElement.dataset.theme === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
    document.documentElement.dataset.theme = dark ? 'light' : 'dark';
    localStorage.setItem('nv-theme', document.documentElement.dataset.theme);
  });
  for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => showView(b.dataset.view));
  for (const id of ['search', 'state-filter', 'threat-filter', 'sort', 'show-local']) {
    $(id).addEventListener('input', () => { S.cardsShown = CARD_PAGE; S.scroll.clear(); render(); });
  }
  $('show-info').addEventListener('input', renderAlerts);
  $('pause').addEventListener('click', () => {
    S.paused = !S.paused;
    $('pause').textContent = S.paused ? 'Resume' : 'Pause';
    $('pause').setAttribute('aria-pressed', String(S.paused));
    $('live-dot').className = S.paused ? 'dot paused' : 'dot on';
    if (!S.paused) applyPending(); else showLast();
  });
  $('interval').addEventListener('change', () => setInterval_(Number($('interval').value)));
  $('refresh-now').addEventListener('click', () => { applyPending(); if (S.view === 'health') loadHealth(); });
  $('history-form').addEventListener('submit', loadHistory);
  $('settings-form').addEventListener('submit', saveSettings);
  setInterval_(2);
  getJSON('/api/settings').then((j) => setInterval_(j.settings.refresh_interval_s)).catch(() => {});
  loadAll().then(() => { performance.mark('nv-ready'); document.body.dataset.ready = '1'; }).catch(showError);
  connect();
  setInterval(() => { if (!S.paused && S.interval !== 0) loadAll().catch(showError); }, 60000);
});
