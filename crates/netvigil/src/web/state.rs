//! The live view the dashboard shows: connections grouped by program, alerts, network health,
//! fed by the pipeline's thread ([`LiveView::on_record`], [`LiveView::on_alert`],
//! [`LiveView::on_snapshot`], [`LiveView::set_health`]) and read by the web server.
//!
//! Every update takes one mutex for a short time and publishes a small JSON message on a
//! broadcast channel (the SSE stream); nothing here blocks on the network or on a slow
//! client (a lagging SSE client misses messages and is told to reload). Memory is bounded:
//! every open connection up to [`Limits::max_connections`] in all, at most
//! [`Limits::max_closed`] closed ones (the oldest go first; they are in the history), the
//! newest [`Limits::max_alerts`] alerts and [`Limits::max_processes`] processes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use engine::Record;
use engine::connections::{ConnEvent, Direction};
use engine::enrich::{Rdns, Services};
use engine::judge::{Alert, Assessment, Config, Level, Subject, is_loopback};
use engine::sockets::{ProcessInfo, SockProto, SocketSnapshot};
use serde::Serialize;
use tokio::sync::broadcast;

use super::health::{Health, ProcUsage};

/// Caps on what the view keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections in all, open and closed (past it the oldest closed, then the oldest open
    /// ones go).
    pub max_connections: usize,
    /// Closed connections kept beside the open ones.
    pub max_closed: usize,
    pub max_alerts: usize,
    pub max_processes: usize,
    /// Byte-count points kept per connection (for its "bytes over time" chart).
    pub samples_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            max_closed: 20_000,
            max_alerts: 1_000,
            max_processes: 4_096,
            samples_per_connection: 60,
        }
    }
}

/// One flag of a connection, as the API gives it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FlagView {
    pub kind: &'static str,
    pub points: u32,
    pub why: String,
}

/// One connection (or listening socket) as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Conn {
    /// Stable key: `proto|local|remote`.
    pub id: String,
    /// Program name, `None` when no process could be tied to it.
    pub app: Option<String>,
    pub pid: Option<u32>,
    /// "tcp", "udp" ...
    pub proto: String,
    pub direction: &'static str,
    pub local: String,
    pub remote_ip: String,
    pub remote_port: u16,
    /// The port of the service (remote for outbound, local for inbound and listening).
    pub port: u16,
    /// Service name of `port` from /etc/services ("https").
    pub service: Option<String>,
    /// What the flow speaks when the packets said ("tls", "dns" ...).
    pub app_proto: Option<String>,
    /// Domain from the flow (SNI, Host, DNS answers).
    pub domain: Option<String>,
    /// The network interface its flow was captured on ("eth0"), once a flow record named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Reverse DNS: the PTR name.
    pub rdns: Option<String>,
    /// "name", "none" (looked up, no PTR), "pending" or "unknown" (not looked up).
    pub rdns_state: &'static str,
    /// TCP state ("ESTABLISHED" ...), a flow's state ("closed", "active") or "LISTEN".
    pub state: String,
    pub open: bool,
    pub loopback: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub score: u32,
    pub level: &'static str,
    pub flags: Vec<FlagView>,
    pub explanation: String,
    pub org: Option<String>,
    pub asn: Option<u32>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub rtt_us: Option<u32>,
    pub rttvar_us: Option<u32>,
    pub retrans: Option<u32>,
    pub lost: Option<u32>,
    pub cwnd: Option<u32>,
    pub rx_queue: Option<u32>,
    pub tx_queue: Option<u32>,
    /// `[ts_ms, bytes_in, bytes_out]` totals over time, oldest first. Not in the list or the
    /// stream (up to 60 points a connection would make a body of 10,000 several times larger):
    /// `GET /api/connection/{id}` gives them.
    #[serde(skip)]
    pub samples: VecDeque<(i64, u64, u64)>,
    /// This connection serialised, kept until it changes (every change sets it to `None`):
    /// a body of 10,000 connections is then mostly copied, not serialised again.
    #[serde(skip)]
    json: Option<Arc<str>>,
}

/// One alert as the API gives it.
#[derive(Clone, Debug, Serialize)]
pub struct AlertView {
    pub id: String,
    pub ts_ms: i64,
    pub severity: &'static str,
    pub rule: &'static str,
    pub app: Option<String>,
    pub remote: Option<String>,
    pub port: Option<u16>,
    pub bytes: Option<u64>,
    pub score: Option<u32>,
    pub reason: String,
    /// The connection this alert is about, when it is in the view.
    pub conn_id: Option<String>,
}

/// A message on the SSE stream: its event name and JSON data.
#[derive(Clone, Debug)]
pub struct Message {
    pub event: &'static str,
    pub data: String,
}

type Key = (String, SocketAddr, SocketAddr);

#[derive(Debug, Default)]
struct State {
    conns: HashMap<Key, Conn>,
    alerts: VecDeque<AlertView>,
    processes: HashMap<u32, (ProcessInfo, u64)>,
    usage: HashMap<u32, ProcUsage>,
    health: Option<Health>,
    seq: u64,
    updated_ms: i64,
    tick: u64,
    /// Bumped by every change (see `lock_mut`): the key of the cached `/api/connections` body.
    generation: u64,
    /// The last digest: (period, sentence, time in ms).
    digest: Option<(&'static str, String, i64)>,
    /// Updates until closed connections are counted again (counting is a walk over every
    /// connection; one update closes few, so a count every `max_closed / 10` updates keeps
    /// the closed ones within 10% of their cap at a small cost).
    closed_check_in: usize,
}

/// The kept texts of one app's connections, in the order of the list.
type Fragments = Vec<Arc<str>>;

/// A serialised `/api/connections` body.
#[derive(Debug)]
struct Cached {
    generation: u64,
    /// When the build began (the state it shows is from then or later).
    started: Instant,
    body: Bytes,
}

/// What the pipeline feeds and the server reads. Share it as `Arc<LiveView>`.
pub struct LiveView {
    state: Mutex<State>,
    /// `/api/connections` bodies: [without closed, with closed], each with the generation it
    /// was built at and when its build began.
    cache: Mutex<[Option<Cached>; 2]>,
    tx: broadcast::Sender<Arc<Message>>,
    limits: Limits,
    config: Config,
    services: Option<Box<dyn Services>>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn ns_to_ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

fn key_string(k: &Key) -> String {
    format!("{}|{}|{}", k.0, k.1, k.2)
}

impl LiveView {
    /// An empty view. `config` is the judgement's (it decides which end of a flow is local);
    /// `services` names ports (`intel::ServiceNames::system()` in the binary).
    pub fn new(config: Config, services: Option<Box<dyn Services>>, limits: Limits) -> Arc<Self> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Self {
            state: Mutex::new(State::default()),
            cache: Mutex::new([None, None]),
            tx,
            limits,
            config,
            services,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lock, for a change: the generation moves on, so cached answers are rebuilt.
    fn lock_mut(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        st.generation += 1;
        st
    }

    /// A receiver of every update from now on (the SSE stream).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    fn publish(&self, st: &mut State, event: &'static str, data: String, now_ms: i64) {
        st.seq += 1;
        st.updated_ms = now_ms;
        // No receiver is fine: nobody has the page open.
        let _ = self.tx.send(Arc::new(Message { event, data }));
    }

    /// A judged flow or connection record (other record types are ignored). `a` is what
    /// `Judge::flow`/`Judge::connection` returned for it; `now` the wall clock in ns.
    pub fn on_record(&self, r: &Record, a: &Assessment, now: i64) {
        let (s, proto) = match r {
            Record::Flow(f) => (
                Subject::from_flow(f, &self.config),
                engine::record::l4_name(f.proto),
            ),
            Record::Connection(c) => (Subject::from_connection(c), c.proto.name()),
            _ => return,
        };
        let now_ms = ns_to_ms(now);
        let key: Key = (proto, s.local, s.remote);
        let mut st = self.lock_mut();
        if let Some(p) = s.process {
            remember_process(&mut st, p, self.limits.max_processes);
        }
        let listening = matches!(r, Record::Connection(c) if c.event == ConnEvent::ListeningOnAll);
        let conn = self.entry(&mut st, key, now_ms, s.direction);
        if let Some(p) = s.process.filter(|p| !p.name.is_empty()) {
            conn.app = Some(p.name.clone());
            conn.pid = Some(p.pid);
        }
        conn.port = s.service_port();
        conn.app_proto = s.app_proto.map(str::to_string).or(conn.app_proto.take());
        if let Some(d) = s.domain {
            conn.domain = Some(d.to_string());
        }
        conn.last_seen_ms = now_ms;
        match r {
            Record::Flow(f) => {
                // A flow record is written when the flow ended; a 4-tuple used again adds up.
                conn.bytes_in = conn.bytes_in.saturating_add(s.bytes_in.unwrap_or(0));
                conn.bytes_out = conn.bytes_out.saturating_add(s.bytes_out.unwrap_or(0));
                conn.state = f.state.as_str().to_string();
                conn.open = false;
                if let Some(i) = &f.iface {
                    conn.iface = Some(i.to_string());
                }
            }
            Record::Connection(c) => {
                if let Some(t) = c.tcp {
                    conn.bytes_in = conn.bytes_in.max(t.bytes_received);
                    conn.bytes_out = conn.bytes_out.max(t.bytes_acked);
                    set_tcp(conn, &t);
                }
                conn.open = c.event != ConnEvent::Closed;
                conn.state = if listening {
                    "LISTEN".into()
                } else if c.event == ConnEvent::Closed {
                    "CLOSED".into()
                } else {
                    c.state.map_or_else(|| "ACTIVE".into(), |t| t.name().to_string())
                };
            }
            _ => {}
        }
        apply_assessment(conn, a);
        push_sample(conn, now_ms, self.limits.samples_per_connection);
        conn.json = None;
        let data = serde_json::to_string(&*conn).unwrap_or_default();
        conn.json = Some(data.as_str().into());
        self.publish(&mut st, "conn", data, now_ms);
        self.bound(&mut st);
    }

    fn entry<'a>(&self, st: &'a mut State, key: Key, now_ms: i64, dir: Direction) -> &'a mut Conn {
        let services = self.services.as_deref();
        st.conns.entry(key).or_insert_with_key(|k| {
            let (proto, local, remote) = k;
            let port = if dir == Direction::Inbound {
                local.port()
            } else {
                remote.port()
            };
            let pnum = match proto.as_str() {
                "tcp" => 6,
                "udp" => 17,
                "sctp" => 132,
                _ => 0,
            };
            Conn {
                id: key_string(k),
                app: None,
                pid: None,
                proto: proto.clone(),
                direction: dir.as_str(),
                local: local.to_string(),
                remote_ip: remote.ip().to_string(),
                remote_port: remote.port(),
                port,
                service: services.and_then(|s| s.name(pnum, port)).map(str::to_string),
                app_proto: None,
                domain: None,
                iface: None,
                rdns: None,
                rdns_state: "unknown",
                state: String::new(),
                open: true,
                loopback: is_loopback(remote.ip()) || is_loopback(local.ip()),
                bytes_in: 0,
                bytes_out: 0,
                score: 0,
                level: Level::Clean.as_str(),
                flags: Vec::new(),
                explanation: String::new(),
                org: None,
                asn: None,
                country: None,
                city: None,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                rtt_us: None,
                rttvar_us: None,
                retrans: None,
                lost: None,
                cwnd: None,
                rx_queue: None,
                tx_queue: None,
                samples: VecDeque::new(),
                json: None,
            }
        })
    }

    /// An alert from the judgement.
    pub fn on_alert(&self, a: &Alert) {
        let mut st = self.lock_mut();
        let conn_id = st
            .conns
            .values()
            .filter(|c| {
                c.app == a.app
                    && a.remote.as_deref().is_some_and(|r| {
                        c.domain.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(r)) || c.remote_ip == r
                    })
                    && a.port.is_none_or(|p| p == c.port)
            })
            .max_by_key(|c| c.last_seen_ms)
            .map(|c| c.id.clone());
        let v = AlertView {
            id: a.id.clone(),
            ts_ms: ns_to_ms(a.ts),
            severity: a.severity.as_str(),
            rule: a.rule.as_str(),
            app: a.app.clone(),
            remote: a.remote.clone(),
            port: a.port,
            bytes: a.bytes,
            score: a.score,
            reason: a.reason.clone(),
            conn_id,
        };
        let data = serde_json::to_string(&v).unwrap_or_default();
        st.alerts.push_back(v);
        while st.alerts.len() > self.limits.max_alerts {
            st.alerts.pop_front();
        }
        self.publish(&mut st, "alert", data, ns_to_ms(a.ts));
    }

    /// A socket-table snapshot: open sockets get their TCP details (RTT, retransmissions,
    /// queues) and byte counts; connections that were open and are no longer listed are
    /// marked closed.
    pub fn on_snapshot(&self, snap: &SocketSnapshot) {
        let now_ms = ns_to_ms(snap.taken_at);
        let mut st = self.lock_mut();
        for p in &snap.processes {
            remember_process(&mut st, p, self.limits.max_processes);
        }
        let owners: HashMap<u64, u32> = snap.owners.iter().copied().collect();
        let mut present: HashSet<Key> = HashSet::with_capacity(snap.sockets.len());
        let mut changed = Vec::new();
        for s in &snap.sockets {
            if matches!(s.proto, SockProto::Packet | SockProto::Raw(_)) {
                continue;
            }
            let listening = s.is_listening();
            let key: Key = (s.proto.name(), s.local, s.remote);
            present.insert(key.clone());
            let known = st.conns.contains_key(&key);
            if !known && !listening && s.remote.port() == 0 && !s.connected {
                continue;
            }
            let pid = owners.get(&s.inode).copied();
            let name = pid
                .and_then(|p| st.processes.get(&p))
                .map(|(p, _)| p.name.clone());
            let dir = if listening {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            let conn = self.entry(&mut st, key, now_ms, dir);
            let before = (
                conn.bytes_in,
                conn.bytes_out,
                conn.open,
                conn.rtt_us,
                conn.rx_queue,
                conn.tx_queue,
            );
            let details = (conn.rttvar_us, conn.retrans, conn.lost, conn.cwnd);
            let mut named = false;
            if let (Some(pid), Some(name)) = (pid, name)
                && conn.app.is_none()
            {
                conn.app = Some(name);
                conn.pid = Some(pid);
                named = true;
            }
            conn.open = true;
            let state = if listening {
                "LISTEN"
            } else {
                s.state.map_or("ACTIVE", |t| t.name())
            };
            let state_changed = conn.state != state;
            if state_changed {
                conn.state = state.to_string();
            }
            conn.rx_queue = Some(s.rx_queue);
            conn.tx_queue = Some(s.tx_queue);
            if let Some(t) = s.tcp {
                conn.bytes_in = conn.bytes_in.max(t.bytes_received);
                conn.bytes_out = conn.bytes_out.max(t.bytes_acked);
                set_tcp(conn, &t);
            }
            let after = (
                conn.bytes_in,
                conn.bytes_out,
                conn.open,
                conn.rtt_us,
                conn.rx_queue,
                conn.tx_queue,
            );
            if before != after || !known {
                conn.last_seen_ms = now_ms;
                push_sample(conn, now_ms, self.limits.samples_per_connection);
                changed.push(conn.id.clone());
            } else if state_changed || named {
                changed.push(conn.id.clone());
            }
            if before != after
                || !known
                || state_changed
                || named
                || details != (conn.rttvar_us, conn.retrans, conn.lost, conn.cwnd)
            {
                conn.json = None;
            }
        }
        for (k, c) in st.conns.iter_mut() {
            let from_socket_table =
                !c.state.is_empty() && c.state.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_');
            if c.open && from_socket_table && !present.contains(k) {
                c.open = false;
                c.state = "CLOSED".into();
                c.last_seen_ms = now_ms;
                c.json = None;
                changed.push(c.id.clone());
            }
        }
        // Many changes at once: one "reload" message instead of thousands.
        if changed.len() > 200 {
            self.publish(
                &mut st,
                "reload",
                format!("{{\"changed\":{}}}", changed.len()),
                now_ms,
            );
        } else {
            let by_id: HashSet<&String> = changed.iter().collect();
            let msgs: Vec<String> = st
                .conns
                .values()
                .filter(|c| by_id.contains(&c.id))
                .filter_map(|c| serde_json::to_string(c).ok())
                .collect();
            for m in msgs {
                self.publish(&mut st, "conn", m, now_ms);
            }
        }
        self.bound(&mut st);
    }

    /// Network health (from the dashboard's own sampler, or the pipeline).
    pub fn set_health(&self, h: Health) {
        let mut st = self.lock_mut();
        let data = serde_json::json!({
            "ts_ms": h.ts_ms,
            "bandwidth": h.bandwidth.last(),
        })
        .to_string();
        let ts = h.ts_ms;
        st.health = Some(h);
        self.publish(&mut st, "health", data, ts);
    }

    /// CPU and memory of processes (from the dashboard's sampler).
    pub fn set_usage(&self, usage: HashMap<u32, ProcUsage>) {
        self.lock_mut().usage = usage;
    }

    /// The pids of programs with connections in the view (for the usage sampler), at most `n`.
    pub fn pids(&self, n: usize) -> Vec<u32> {
        let st = self.lock();
        let mut v: Vec<u32> = st
            .conns
            .values()
            .filter_map(|c| c.pid)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        v.sort_unstable();
        v.truncate(n);
        v
    }

    /// Applies a reverse-DNS answer learned after the record was judged.
    pub fn set_rdns(&self, ip: IpAddr, r: &Rdns) {
        let ip = ip.to_string();
        let mut st = self.lock_mut();
        for c in st.conns.values_mut().filter(|c| c.remote_ip == ip) {
            set_rdns(c, r);
        }
    }

    fn bound(&self, st: &mut State) {
        let (max, max_closed) = (self.limits.max_connections, self.limits.max_closed);
        let len = st.conns.len();
        if len <= max && len <= max_closed {
            return;
        }
        if len <= max && st.closed_check_in > 0 {
            st.closed_check_in -= 1;
            return;
        }
        let closed = st.conns.values().filter(|c| !c.open).count();
        // Down to 90% at once so that eviction is rare: closed ones first, oldest first; open
        // ones only past the overall cap.
        let mut excess = 0;
        if closed > max_closed {
            excess = closed - (max_closed - max_closed / 10);
        }
        if len > max {
            excess = excess.max(len - (max - max / 10));
        }
        if excess > 0 {
            let mut order: Vec<(bool, i64, Key)> = st
                .conns
                .iter()
                .map(|(k, c)| (c.open, c.last_seen_ms, k.clone()))
                .collect();
            order.sort_unstable_by_key(|a| (a.0, a.1));
            for (_, _, k) in order.into_iter().take(excess) {
                st.conns.remove(&k);
            }
        }
        st.closed_check_in = max_closed / 10;
    }

    /// The body of `GET /api/connections`: serialised once per generation of the view and
    /// shared by every request until the next change (a cheap clone of the bytes). The cache
    /// lock is held while building, so requests that arrive during a build wait for it and take
    /// its result (it began after they arrived, so it is as fresh as a build of their own):
    /// a view that changes all the time costs one build at a time, not one per request.
    pub fn connections_body(&self, include_closed: bool) -> Bytes {
        let arrived = Instant::now();
        let slot = usize::from(include_closed);
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.lock().generation;
        if let Some(c) = &cache[slot]
            && (c.generation == generation || c.started >= arrived)
        {
            return c.body.clone();
        }
        let started = Instant::now();
        let (generation, body) = self.build_connections(include_closed);
        let body = Bytes::from(body);
        cache[slot] = Some(Cached {
            generation,
            started,
            body: body.clone(),
        });
        body
    }

    /// Connections, grouped by program (see docs/api.md, `GET /api/connections`), built now.
    pub fn connections_json(&self, include_closed: bool) -> String {
        self.build_connections(include_closed).1
    }

    /// Connections, grouped by program, with the generation they were built at.
    /// Serialized directly (no `serde_json::Value` tree per connection): 10,000 rows stay cheap.
    fn build_connections(&self, include_closed: bool) -> (u64, String) {
        // Under the lock: serialise the connections that changed since the last build (not a
        // change of the view: the generation stays), group them, and take a reference-counted
        // handle on each fragment. The copying into one body happens after the lock is let go,
        // so the pipeline waits for the grouping only.
        let (generation, head, apps) = {
            let mut st = self.lock();
            for c in st.conns.values_mut().filter(|c| c.json.is_none()) {
                c.json = Some(serde_json::to_string(&*c).unwrap_or_default().into());
            }
            let st = &*st;
            let mut apps: HashMap<Option<&str>, Vec<&Conn>> = HashMap::new();
            for c in st.conns.values().filter(|c| include_closed || c.open) {
                apps.entry(c.app.as_deref()).or_default().push(c);
            }
            let (mut tin, mut tout, mut tconn) = (0u64, 0u64, 0usize);
            let mut out: Vec<(Option<&str>, String, Fragments)> = Vec::with_capacity(apps.len());
            for (app, mut conns) in apps {
                conns.sort_unstable_by(|a, b| {
                    b.score
                        .cmp(&a.score)
                        .then(b.last_seen_ms.cmp(&a.last_seen_ms))
                        .then(a.id.cmp(&b.id))
                });
                let bytes_in: u64 = conns.iter().map(|c| c.bytes_in).sum();
                let bytes_out: u64 = conns.iter().map(|c| c.bytes_out).sum();
                let score = conns.iter().map(|c| c.score).max().unwrap_or(0);
                let mut pids: Vec<u32> = conns.iter().filter_map(|c| c.pid).collect();
                pids.sort_unstable();
                pids.dedup();
                let proc_info = pids.iter().find_map(|p| st.processes.get(p)).map(|(p, _)| p);
                let cpu: Option<f64> = pids
                    .iter()
                    .filter_map(|p| st.usage.get(p)?.cpu_pct)
                    .reduce(|a, b| a + b);
                let rss: Option<u64> = pids
                    .iter()
                    .filter_map(|p| st.usage.get(p)?.rss_bytes)
                    .reduce(|a, b| a + b);
                tin = tin.saturating_add(bytes_in);
                tout = tout.saturating_add(bytes_out);
                tconn += conns.len();
                let mut obj = serde_json::json!({
                    "app": app,
                    "pids": pids,
                    "exe": proc_info.and_then(|p| p.exe.as_ref()).map(|e| e.display().to_string()),
                    "package": proc_info.and_then(|p| p.package.clone()),
                    "packaged": proc_info.filter(|p| p.package_checked).map(|p| p.package.is_some()),
                    "user": proc_info.and_then(|p| p.user.clone()),
                    "unit": proc_info.and_then(|p| p.unit.clone()),
                    "container": proc_info.and_then(|p| p.container.clone()),
                    "connections": conns.len(),
                    "open": conns.iter().filter(|c| c.open).count(),
                    "bytes_in": bytes_in,
                    "bytes_out": bytes_out,
                    "score": score,
                    "level": Level::from_score(score).as_str(),
                    "cpu_pct": cpu,
                    "rss_bytes": rss,
                })
                .to_string();
                obj.pop();
                let frags = conns
                    .iter()
                    .map(|c| c.json.clone().unwrap_or_else(|| "null".into()))
                    .collect();
                out.push((app, obj, frags));
            }
            // By name (the unknown program first): the same view gives the same bytes.
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let head = serde_json::json!({
                "generated_ms": st.updated_ms,
                "seq": st.seq,
                "totals": {
                    "apps": out.len(),
                    "connections": tconn,
                    "bytes_in": tin,
                    "bytes_out": tout,
                },
            })
            .to_string();
            let out: Vec<(String, Fragments)> = out.into_iter().map(|(_, o, f)| (o, f)).collect();
            (st.generation, head, out)
        };
        let len = head.len()
            + 16
            + apps
                .iter()
                .map(|(o, f)| o.len() + 16 + f.iter().map(|x| x.len() + 1).sum::<usize>())
                .sum::<usize>();
        let mut s = String::with_capacity(len);
        s.push_str(&head[..head.len() - 1]);
        s.push_str(",\"apps\":[");
        for (i, (obj, frags)) in apps.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(obj);
            s.push_str(",\"conns\":[");
            for (j, f) in frags.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str(f);
            }
            s.push_str("]}");
        }
        s.push_str("]}");
        (generation, s)
    }

    /// Drops every connection's kept text (the benchmark's peer: a build that serialises all).
    #[cfg(test)]
    pub fn forget_serialised(&self) {
        for c in self.lock().conns.values_mut() {
            c.json = None;
        }
    }

    /// Alerts, newest first.
    pub fn alerts_json(&self) -> serde_json::Value {
        let st = self.lock();
        let v: Vec<&AlertView> = st.alerts.iter().rev().collect();
        let digest = st
            .digest
            .as_ref()
            .map(|(period, text, ms)| serde_json::json!({ "period": period, "text": text, "ts_ms": ms }));
        serde_json::json!({ "alerts": v, "digest": digest })
    }

    /// The digest of the period that just ended ("hour" or "day"), shown above the alerts.
    pub fn set_digest(&self, period: &'static str, text: String, ts: i64) {
        self.lock_mut().digest = Some((period, text, ns_to_ms(ts)));
    }

    /// The last health sample, with the connection-state counts and top talkers.
    pub fn health_json(&self) -> serde_json::Value {
        let st = self.lock();
        let mut states: HashMap<&str, usize> = HashMap::new();
        let mut talkers: HashMap<Option<&str>, (u64, u64)> = HashMap::new();
        for c in st.conns.values() {
            if c.open {
                *states.entry(c.state.as_str()).or_default() += 1;
            }
            let t = talkers.entry(c.app.as_deref()).or_default();
            t.0 = t.0.saturating_add(c.bytes_in);
            t.1 = t.1.saturating_add(c.bytes_out);
        }
        let mut top: Vec<_> = talkers.into_iter().collect();
        top.sort_unstable_by_key(|(_, (i, o))| std::cmp::Reverse(i.saturating_add(*o)));
        top.truncate(10);
        let top: Vec<_> = top
            .into_iter()
            .map(|(app, (i, o))| serde_json::json!({"app": app, "bytes_in": i, "bytes_out": o}))
            .collect();
        let counters: Vec<_> = super::health::TCP_COUNTERS
            .iter()
            .map(|(k, what)| serde_json::json!({"name": k, "what": what}))
            .collect();
        serde_json::json!({
            "health": st.health,
            "available": st.health.is_some(),
            "states": states,
            "top_talkers": top,
            "counter_help": counters,
        })
    }

    /// One connection with its byte samples (`GET /api/connection/{id}`), `None` when the view
    /// does not hold it.
    pub fn connection_json(&self, id: &str) -> Option<serde_json::Value> {
        let st = self.lock();
        let c = st.conns.values().find(|c| c.id == id)?;
        let mut v = serde_json::to_value(c).ok()?;
        v["samples"] = serde_json::to_value(&c.samples).ok()?;
        Some(v)
    }

    /// What the view knows of one address.
    pub fn whois_json(&self, ip: IpAddr) -> serde_json::Value {
        let st = self.lock();
        let text = ip.to_string();
        let conns: Vec<&Conn> = st.conns.values().filter(|c| c.remote_ip == text).collect();
        let first = conns
            .iter()
            .find(|c| c.org.is_some() || c.country.is_some())
            .or(conns.first());
        let mut domains: Vec<&str> = conns.iter().filter_map(|c| c.domain.as_deref()).collect();
        domains.sort_unstable();
        domains.dedup();
        serde_json::json!({
            "ip": text,
            "global": engine::judge::is_global(ip),
            "rdns": first.and_then(|c| c.rdns.clone()),
            "rdns_state": first.map_or("unknown", |c| c.rdns_state),
            "org": first.and_then(|c| c.org.clone()),
            "asn": first.and_then(|c| c.asn),
            "country": first.and_then(|c| c.country.clone()),
            "city": first.and_then(|c| c.city.clone()),
            "domains": domains,
            "connections": conns,
            "rdap": {
                "available": false,
                "note": "RDAP (whois) is looked up only for public addresses while `netvigil run` \
                         serves the dashboard; org, ASN and country come from the local place databases",
            },
        })
    }

    /// What the view knows of one process, `None` when it never saw it.
    pub fn process_json(&self, pid: u32) -> Option<serde_json::Value> {
        let st = self.lock();
        let conns: Vec<&Conn> = st.conns.values().filter(|c| c.pid == Some(pid)).collect();
        let p = st.processes.get(&pid).map(|(p, _)| p);
        if p.is_none() && conns.is_empty() {
            return None;
        }
        let usage = st.usage.get(&pid).copied().unwrap_or_default();
        Some(serde_json::json!({
            "pid": pid,
            "name": p.map(|p| p.name.clone()),
            "ppid": p.and_then(|p| p.ppid),
            "exe": p.and_then(|p| p.exe.as_ref()).map(|e| e.display().to_string()),
            "cmdline": p.map(|p| p.cmdline.clone()).unwrap_or_default(),
            "user": p.and_then(|p| p.user.clone()),
            "uid": p.and_then(|p| p.uid),
            "start_ms": p.and_then(|p| p.start_time).map(ns_to_ms),
            "container": p.and_then(|p| p.container.clone()),
            "unit": p.and_then(|p| p.unit.clone()),
            "exe_deleted": p.is_some_and(|p| p.exe_deleted),
            "exe_in_temp": p.is_some_and(|p| p.exe_in_temp),
            "package": p.and_then(|p| p.package.clone()),
            "package_checked": p.is_some_and(|p| p.package_checked),
            "inferred": p.is_some_and(|p| p.inferred),
            "cpu_pct": usage.cpu_pct,
            "rss_bytes": usage.rss_bytes,
            "connections": conns,
        }))
    }

    /// The update counter and time of the last update (for the heartbeat).
    pub fn seq(&self) -> (u64, i64) {
        let st = self.lock();
        (st.seq, st.updated_ms)
    }

    /// Number of connections kept.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

fn remember_process(st: &mut State, p: &ProcessInfo, max: usize) {
    st.tick += 1;
    let tick = st.tick;
    st.processes.insert(p.pid, (p.clone(), tick));
    if st.processes.len() > max {
        // Drop the least recently seen quarter at once.
        let mut v: Vec<(u64, u32)> = st.processes.iter().map(|(pid, (_, t))| (*t, *pid)).collect();
        v.sort_unstable();
        for (_, pid) in v.into_iter().take(max / 4 + 1) {
            st.processes.remove(&pid);
        }
    }
}

fn set_tcp(c: &mut Conn, t: &engine::sockets::TcpInfo) {
    c.rtt_us = Some(t.rtt_us);
    c.rttvar_us = Some(t.rttvar_us);
    c.retrans = Some(t.total_retrans);
    c.lost = Some(t.lost);
    c.cwnd = Some(t.snd_cwnd);
}

fn set_rdns(c: &mut Conn, r: &Rdns) {
    c.json = None;
    match r {
        Rdns::Name(n) => {
            c.rdns = Some(n.clone());
            c.rdns_state = "name";
        }
        Rdns::NoName => {
            c.rdns = None;
            c.rdns_state = "none";
        }
        Rdns::Pending => c.rdns_state = "pending",
    }
}

fn apply_assessment(c: &mut Conn, a: &Assessment) {
    c.score = a.score;
    c.level = a.level().as_str();
    c.flags = a
        .flags
        .iter()
        .map(|f| FlagView {
            kind: f.kind.as_str(),
            points: f.points,
            why: f.why.clone(),
        })
        .collect();
    c.explanation = a.explanation.clone();
    if let Some(p) = &a.place {
        c.org = p.org.clone();
        c.asn = p.asn;
        c.country = p.country_str().map(str::to_string);
        c.city = p.city.clone();
    }
    if let Some(r) = &a.rdns {
        set_rdns(c, r);
    }
}

fn push_sample(c: &mut Conn, now_ms: i64, max: usize) {
    if c.samples.back().is_some_and(|s| s.0 == now_ms) {
        c.samples.pop_back();
    }
    c.samples.push_back((now_ms, c.bytes_in, c.bytes_out));
    while c.samples.len() > max {
        c.samples.pop_front();
    }
}
