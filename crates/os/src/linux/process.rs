//! Process attribution from /proc: which process holds a socket inode, and what we can say
//! about that process (name, executable, command line, user, container, systemd unit, package).
//!
//! Everything here reads plain files under a configurable root, so the scanner runs on fake
//! trees in tests ([`ProcessScanner::with_root`]). The parsers are plain functions over text.
//!
//! Costs: a rescan of `/proc/*/fd` is a `readlink` per open file descriptor on the machine, so
//! [`ProcessScanner::owners`] keeps an inode -> pid cache and rescans only when an inode it is
//! asked about is unknown (at most once per call). [`ProcessScanner::info`] reads
//! `/proc/PID/stat` and `readlink`s `/proc/PID/exe` per call and rebuilds the rest only when the
//! process changed (new start time, exec, executable deleted).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use engine::sockets::ProcessInfo;

/// At most this many bytes of `/proc/PID/cmdline` are kept.
pub const CMDLINE_MAX: usize = 4096;

/// Where `rpm` is looked for when dpkg's database is absent.
const RPM: &str = "/usr/bin/rpm";

/// Top-level directories that usr-merged systems turn into symlinks to `/usr/<same>`.
const MERGEABLE_TOPS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32"];

/// Result of [`ProcessScanner::owners`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    /// (socket inode, pid) for each asked-for inode with a known holder, in the order asked
    /// (duplicates and inode 0 left out). A socket held by several processes (a forking server)
    /// is given to the lowest pid.
    pub found: Vec<(u64, u32)>,
    /// Processes whose fd directory could not be read during the most recent rescan (this
    /// call's, or the earlier one the cache comes from): other users' processes when running
    /// without root or CAP_SYS_PTRACE. Their sockets stay unattributed.
    pub unreadable_pids: usize,
    /// Processes whose fd directory was read during the most recent rescan.
    pub scanned_pids: usize,
}

/// Every file dpkg installed that could be a program: a 64-bit hash of the normalised path
/// -> index into `names`. Hashes, not the paths themselves: 12 bytes an entry instead of
/// about 90 (100,000 files: 2 MiB instead of 10); two paths with the same hash (about one
/// chance in 10^9 on a full system) would give one of them the other's package name.
#[derive(Debug)]
struct DpkgIndex {
    paths: HashMap<u64, u32>,
    names: Vec<String>,
}

/// The index's key of a normalised path (SipHash with fixed keys: the same in every run).
fn path_key(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)] // SipHasher: the stable, keyed-by-zero SipHash-2-4 of std.
    let mut h = std::hash::SipHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// Installed files that are never a running program: documentation, manuals, translations,
/// icons, headers, time zones. Left out of the index.
const NOT_PROGRAMS: [&str; 8] = [
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/locale/",
    "/usr/share/icons/",
    "/usr/share/info/",
    "/usr/share/zoneinfo/",
    "/usr/share/help/",
    "/usr/include/",
];

/// The dpkg index of `dir`, built on first use and shared process-wide (the live pipeline
/// has a scanner per thread; each building its own tripled the monitor's memory).
fn shared_dpkg_index(dir: &Path, usr_merged: &[String]) -> Arc<DpkgIndex> {
    static INDEXES: OnceLock<Mutex<HashMap<PathBuf, Arc<DpkgIndex>>>> = OnceLock::new();
    let mut map = INDEXES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Arc::clone(map.entry(dir.to_path_buf()).or_insert_with(|| {
        let (paths, names) = build_dpkg_index(dir, usr_merged);
        Arc::new(DpkgIndex { paths, names })
    }))
}

/// Which package database answers "who owns this file".
#[derive(Debug)]
enum PackageDb {
    /// Not decided yet (decided on the first lookup).
    Unknown,
    /// dpkg: normalised path -> index into `names`, built once per process and database
    /// folder and shared by every scanner (it holds every installed file: megabytes).
    Dpkg(Arc<DpkgIndex>),
    /// rpm, asked once per executable.
    Rpm { cache: HashMap<PathBuf, Option<String>> },
    /// Neither dpkg nor rpm: no lookups are made and `package_checked` stays false.
    Absent,
}

/// What `info` remembers to tell a cached process from a changed one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InfoKey {
    start_ticks: u64,
    comm: String,
    exe_link: Option<PathBuf>,
}

/// Socket owners and process facts from /proc, with caches (see the module docs).
#[derive(Debug)]
pub struct ProcessScanner {
    proc_root: PathBuf,
    dpkg_info: PathBuf,
    etc_passwd: PathBuf,
    /// Top-level directories (e.g. "bin") that are symlinks to /usr/<same> on this machine.
    usr_merged: Vec<String>,
    clk_tck: u64,
    /// Boot time in seconds since the epoch (`btime` of /proc/stat), read once.
    btime: Option<Option<i64>>,
    /// Our own mount namespace (`/proc/self/ns/mnt`), read once.
    own_mnt_ns: Option<Option<PathBuf>>,

    inode_owner: HashMap<u64, u32>,
    /// Start time (clock ticks since boot) of each pid in `inode_owner`, to notice pid reuse.
    pid_start: HashMap<u32, u64>,
    /// Inodes asked for that the last rescan did not find: they do not trigger rescans by
    /// themselves (kernel sockets, other users' processes), but are looked for again by the
    /// next rescan something else triggers.
    unowned: HashSet<u64>,
    last_unreadable: usize,
    last_scanned: usize,
    scans: u64,

    infos: HashMap<u32, (InfoKey, ProcessInfo)>,
    passwd: Option<Passwd>,
    packages: PackageDb,
}

impl Default for ProcessScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock ticks per second of the CPU times in `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`,
/// USER_HZ); 100 when the system does not say.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions and touches
    // no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

impl ProcessScanner {
    /// A scanner over the real `/proc`, `/var/lib/dpkg/info` and `/etc/passwd`.
    pub fn new() -> Self {
        Self::with_root(
            PathBuf::from("/proc"),
            PathBuf::from("/var/lib/dpkg/info"),
            PathBuf::from("/etc/passwd"),
        )
    }

    /// A scanner over other trees (tests use fake ones). The /usr-merge layout is still taken
    /// from this machine's `/`.
    pub fn with_root(proc_root: PathBuf, dpkg_info: PathBuf, etc_passwd: PathBuf) -> Self {
        ProcessScanner {
            proc_root,
            dpkg_info,
            etc_passwd,
            usr_merged: detect_usr_merged(Path::new("/")),
            clk_tck: clock_ticks(),
            btime: None,
            own_mnt_ns: None,
            inode_owner: HashMap::new(),
            pid_start: HashMap::new(),
            unowned: HashSet::new(),
            last_unreadable: 0,
            last_scanned: 0,
            scans: 0,
            infos: HashMap::new(),
            passwd: None,
            packages: PackageDb::Unknown,
        }
    }

    /// How many times `/proc/*/fd` has been rescanned.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// The pids the inode cache holds, sorted.
    pub fn cached_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.pid_start.keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// Socket inode -> pid for the given inodes.
    ///
    /// Incremental: inodes found by an earlier rescan are answered from the cache after
    /// checking that their process still runs (same pid, same start time); processes that
    /// exited are dropped. `/proc/*/fd` is rescanned, at most once per call, when an inode is
    /// not in the cache (or its cached holder exited). Inodes a rescan did not find (kernel
    /// sockets, other users' processes without privilege) do not trigger rescans on later calls
    /// by themselves. Inode 0 (TIME_WAIT, sockets not yet accepted) is never looked up.
    pub fn owners(&mut self, inodes: &[u64]) -> Owners {
        let mut seen = HashSet::with_capacity(inodes.len());
        let wanted: Vec<u64> = inodes
            .iter()
            .copied()
            .filter(|&i| i != 0 && seen.insert(i))
            .collect();

        // Check the cached holders of the asked-for inodes, once per pid.
        let mut alive: HashMap<u32, bool> = HashMap::new();
        let mut dead: HashSet<u32> = HashSet::new();
        let mut need_scan = false;
        for &inode in &wanted {
            match self.inode_owner.get(&inode) {
                Some(&pid) => {
                    let ok = *alive.entry(pid).or_insert_with(|| {
                        let start = self.pid_start.get(&pid).copied();
                        start.is_some() && read_start_ticks(&self.proc_root, pid) == start
                    });
                    if !ok {
                        dead.insert(pid);
                        need_scan = true;
                    }
                }
                None => {
                    if !self.unowned.contains(&inode) {
                        need_scan = true;
                    }
                }
            }
        }
        if !dead.is_empty() {
            self.inode_owner.retain(|_, pid| !dead.contains(pid));
            self.pid_start.retain(|pid, _| !dead.contains(pid));
            self.infos.retain(|pid, _| !dead.contains(pid));
        }

        if need_scan {
            self.rescan();
            self.unowned = wanted
                .iter()
                .copied()
                .filter(|i| !self.inode_owner.contains_key(i))
                .collect();
        } else {
            let asked: HashSet<u64> = wanted.iter().copied().collect();
            self.unowned.retain(|i| asked.contains(i));
        }

        Owners {
            found: wanted
                .iter()
                .filter_map(|&i| self.inode_owner.get(&i).map(|&pid| (i, pid)))
                .collect(),
            unreadable_pids: self.last_unreadable,
            scanned_pids: self.last_scanned,
        }
    }

    /// The process holding socket `inode`, looked for right now, newest pids first (a
    /// connection whose owner is not cached usually comes from a process that just started),
    /// stopping at the first holder. The answer is added to the cache.
    pub fn find_inode(&mut self, inode: u64) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        if let Some(&pid) = self.inode_owner.get(&inode) {
            let start = self.pid_start.get(&pid).copied();
            if start.is_some() && read_start_ticks(&self.proc_root, pid) == start {
                return Some(pid);
            }
        }
        let mut pids: Vec<u32> = fs::read_dir(&self.proc_root)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
            .collect();
        pids.sort_unstable_by(|a, b| b.cmp(a));
        let want = format!("socket:[{inode}]");
        for pid in pids {
            let Ok(fds) = fs::read_dir(self.proc_root.join(pid.to_string()).join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                    if let Some(start) = read_start_ticks(&self.proc_root, pid) {
                        self.inode_owner.insert(inode, pid);
                        self.pid_start.insert(pid, start);
                        self.unowned.remove(&inode);
                    }
                    return Some(pid);
                }
            }
        }
        None
    }

    /// Reads every `/proc/PID/fd` and rebuilds the inode cache from it.
    fn rescan(&mut self) {
        self.scans += 1;
        let mut owner: HashMap<u64, u32> = HashMap::new();
        let mut present: HashSet<u32> = HashSet::new();
        let mut unreadable = 0;
        let mut scanned = 0;
        let Ok(dir) = fs::read_dir(&self.proc_root) else {
            // /proc not mounted or not readable: nothing is attributed; the counts say so.
            self.inode_owner.clear();
            self.pid_start.clear();
            self.last_unreadable = 0;
            self.last_scanned = 0;
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            present.insert(pid);
            let fd_dir = entry.path().join("fd");
            let fds = match fs::read_dir(&fd_dir) {
                Ok(fds) => fds,
                Err(e) if is_denied(&e) => {
                    unreadable += 1;
                    continue;
                }
                // Exited meanwhile, or a zombie: nothing to attribute.
                Err(_) => continue,
            };
            scanned += 1;
            for fd in fds.flatten() {
                let Ok(target) = fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = target.to_str().and_then(parse_socket_link) else {
                    continue;
                };
                owner
                    .entry(inode)
                    .and_modify(|p| *p = (*p).min(pid))
                    .or_insert(pid);
            }
        }
        let holders: HashSet<u32> = owner.values().copied().collect();
        let mut pid_start = HashMap::with_capacity(holders.len());
        for pid in holders {
            match read_start_ticks(&self.proc_root, pid) {
                Some(start) => {
                    pid_start.insert(pid, start);
                }
                None => {
                    // Exited during the scan.
                    owner.retain(|_, p| *p != pid);
                }
            }
        }
        self.inode_owner = owner;
        self.pid_start = pid_start;
        self.last_unreadable = unreadable;
        self.last_scanned = scanned;
        self.infos.retain(|pid, _| present.contains(pid));
    }

    /// Facts about one process, or `None` when it does not exist (or its `stat` is unreadable).
    ///
    /// Cached by pid, start time, name and executable link: a reused pid, an exec, or the
    /// executable being deleted gives fresh facts; otherwise the cached ones are returned (a
    /// changed command line is not noticed).
    pub fn info(&mut self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.proc_root.join(pid.to_string());
        let stat = parse_stat(&fs::read_to_string(dir.join("stat")).ok()?)?;
        let exe_link = fs::read_link(dir.join("exe")).ok();
        let key = InfoKey {
            start_ticks: stat.start_ticks,
            comm: stat.comm.clone(),
            exe_link,
        };
        if let Some((k, info)) = self.infos.get(&pid)
            && *k == key
        {
            return Some(info.clone());
        }

        let (exe, exe_deleted) = match &key.exe_link {
            Some(link) => {
                let (path, deleted) = strip_deleted(link);
                (Some(path), deleted)
            }
            None => (None, false),
        };
        let uid = fs::read_to_string(dir.join("status"))
            .ok()
            .as_deref()
            .and_then(parse_status_uid);
        let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        let start_time = self
            .btime()
            .map(|b| start_time_ns(b, stat.start_ticks, self.clk_tck));
        let user = uid.and_then(|u| self.passwd().name(u).map(str::to_owned));
        let exe_in_temp = exe
            .as_deref()
            .is_some_and(|e| is_temp_path(e, &self.passwd().homes));
        let (package, package_checked) = match &exe {
            Some(e) if self.same_mount_ns(&dir) => match self.package_of(e) {
                Some(p) => (p, true),
                None => (None, false),
            },
            _ => (None, false),
        };
        let info = ProcessInfo {
            pid,
            ppid: (stat.ppid != 0).then_some(stat.ppid),
            name: stat.comm,
            exe,
            cmdline: read_cmdline(&dir.join("cmdline")),
            uid,
            user,
            start_time,
            container: container_id(&cgroup),
            unit: systemd_unit(&cgroup),
            exe_deleted,
            exe_in_temp,
            package,
            package_checked,
            inferred: false,
        };
        self.infos.insert(pid, (key, info.clone()));
        Some(info)
    }

    fn btime(&mut self) -> Option<i64> {
        *self.btime.get_or_insert_with(|| {
            fs::read_to_string(self.proc_root.join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_btime)
        })
    }

    fn passwd(&mut self) -> &Passwd {
        self.passwd
            .get_or_insert_with(|| Passwd::parse(&fs::read_to_string(&self.etc_passwd).unwrap_or_default()))
    }

    /// Whether the process sees the same files we do (an exe path inside a container names a
    /// file in the container's tree, not ours). Unknown counts as the same.
    fn same_mount_ns(&mut self, dir: &Path) -> bool {
        let proc_root = &self.proc_root;
        let own = self
            .own_mnt_ns
            .get_or_insert_with(|| fs::read_link(proc_root.join("self/ns/mnt")).ok())
            .clone();
        match (own, fs::read_link(dir.join("ns/mnt")).ok()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// `Some(owner)` when a lookup was made (owner `None`: no package owns the file), `None`
    /// when no package database is available.
    fn package_of(&mut self, exe: &Path) -> Option<Option<String>> {
        if matches!(self.packages, PackageDb::Unknown) {
            self.packages = if self.dpkg_info.is_dir() {
                PackageDb::Dpkg(shared_dpkg_index(&self.dpkg_info, &self.usr_merged))
            } else if Path::new(RPM).exists() {
                PackageDb::Rpm {
                    cache: HashMap::new(),
                }
            } else {
                PackageDb::Absent
            };
        }
        match &mut self.packages {
            PackageDb::Dpkg(ix) => {
                let norm = normalize_usr_merge(exe.to_str()?, &self.usr_merged);
                Some(
                    ix.paths
                        .get(&path_key(&norm))
                        .map(|&i| ix.names[i as usize].clone()),
                )
            }
            PackageDb::Rpm { cache } => Some(
                cache
                    .entry(exe.to_path_buf())
                    .or_insert_with(|| rpm_owner(exe))
                    .clone(),
            ),
            PackageDb::Absent | PackageDb::Unknown => None,
        }
    }
}

fn is_denied(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EPERM)
}

fn read_start_ticks(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text).map(|s| s.start_ticks)
}

fn read_cmdline(path: &Path) -> Vec<String> {
    let mut buf = Vec::new();
    let Ok(file) = fs::File::open(path) else {
        return Vec::new();
    };
    if file.take(CMDLINE_MAX as u64).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    parse_cmdline(&buf)
}

fn rpm_owner(exe: &Path) -> Option<String> {
    let out = Command::new(RPM)
        .args(["-qf", "--queryformat", "%{NAME}\\n"])
        .arg(exe)
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.lines().next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Reads every `*.list` file of dpkg's database into normalised path -> package.
fn build_dpkg_index(dir: &Path, usr_merged: &[String]) -> (HashMap<u64, u32>, Vec<String>) {
    let mut paths: HashMap<u64, u32> = HashMap::new();
    let mut names = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return (paths, names);
    };
    let mut lists: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = dpkg_list_package(e.file_name().to_str()?)?.to_owned();
            Some((name, e.path()))
        })
        .collect();
    // Deterministic when two packages list the same path (directories, diversions).
    lists.sort();
    for (name, path) in lists {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let id = names.len() as u32;
        names.push(name);
        for line in text.lines() {
            let line = line.trim_end();
            if !line.starts_with('/') || NOT_PROGRAMS.iter().any(|p| line.starts_with(p)) {
                continue;
            }
            let norm = normalize_usr_merge(line, usr_merged);
            paths.entry(path_key(&norm)).or_insert(id);
        }
    }
    (paths, names)
}

/// The top-level directories of `root` (e.g. "bin") that are symlinks to `usr/<same>`.
pub fn detect_usr_merged(root: &Path) -> Vec<String> {
    MERGEABLE_TOPS
        .iter()
        .filter(|top| {
            fs::read_link(root.join(top)).is_ok_and(|t| {
                let t = t.to_string_lossy();
                let t = t.trim_start_matches('/').trim_end_matches('/');
                t == format!("usr/{top}")
            })
        })
        .map(|t| (*t).to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parsers: plain functions over recorded text.

/// The fields of `/proc/PID/stat` we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// Command name, between the first '(' and the LAST ')' (it may contain both).
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`: "pid (comm) state ppid ... starttime(22) ...". The command name
/// may contain spaces and parentheses, so it ends at the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    let mut rest = text[close + 1..].split_ascii_whitespace();
    // rest starts at field 3 (state); field N is rest.nth(N - 3).
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let start_ticks = rest.nth(22 - 5)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        start_ticks,
    })
}

/// The real uid from the `Uid:` line of `/proc/PID/status` ("Uid:\treal\teffective\tsaved\tfs").
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Start time in nanoseconds since the epoch from boot time and start ticks.
pub fn start_time_ns(btime: i64, start_ticks: u64, clk_tck: u64) -> i64 {
    let clk = clk_tck.max(1) as i128;
    let ns = btime as i128 * 1_000_000_000 + start_ticks as i128 * 1_000_000_000 / clk;
    ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The inode of a `/proc/PID/fd/N` link target "socket:[12345]".
pub fn parse_socket_link(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// NUL-separated arguments, lossy UTF-8; the trailing NUL does not make an empty argument.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Splits the " (deleted)" suffix the kernel adds to `/proc/PID/exe` of a deleted executable.
pub fn strip_deleted(link: &Path) -> (PathBuf, bool) {
    match link.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(p) => (PathBuf::from(p), true),
        None => (link.to_path_buf(), false),
    }
}

/// Executable in a temporary or cache directory: /tmp, /var/tmp, /dev/shm, or a `.cache`
/// directory under /root, /home/<user> or one of the given home directories.
pub fn is_temp_path(path: &Path, homes: &[String]) -> bool {
    if ["/tmp", "/var/tmp", "/dev/shm"]
        .iter()
        .any(|d| path.starts_with(d))
    {
        return true;
    }
    let home_cache = |home: &Path| {
        path.strip_prefix(home).is_ok_and(|rest| {
            rest.components()
                .next()
                .is_some_and(|c| c.as_os_str() == ".cache")
        })
    };
    if home_cache(Path::new("/root")) {
        return true;
    }
    if let Ok(rest) = path.strip_prefix("/home") {
        let mut c = rest.components();
        if c.next().is_some() && c.next().is_some_and(|c| c.as_os_str() == ".cache") {
            return true;
        }
    }
    homes
        .iter()
        .filter(|h| h.len() > 1)
        .any(|h| home_cache(Path::new(h)))
}

/// Users from `/etc/passwd`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passwd {
    names: HashMap<u32, String>,
    /// Home directories of all users.
    pub homes: Vec<String>,
}

impl Passwd {
    /// Parses "name:password:uid:gid:gecos:home:shell" lines; the first name for a uid wins.
    pub fn parse(text: &str) -> Self {
        let mut p = Passwd::default();
        for line in text.lines() {
            if line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
                continue;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                continue;
            }
            let Ok(uid) = f[2].parse::<u32>() else { continue };
            p.names.entry(uid).or_insert_with(|| f[0].to_owned());
            if f[5].starts_with('/') && f[5] != "/" && !p.homes.iter().any(|h| h == f[5]) {
                p.homes.push(f[5].to_owned());
            }
        }
        p
    }

    pub fn name(&self, uid: u32) -> Option<&str> {
        self.names.get(&uid).map(String::as_str)
    }
}

/// The package a dpkg `*.list` file belongs to: "coreutils.list" -> "coreutils",
/// "libc6:amd64.list" -> "libc6"; `None` for other files.
pub fn dpkg_list_package(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".list")?;
    let name = stem.split(':').next()?;
    (!name.is_empty()).then_some(name)
}

/// Maps a path through the /usr-merge symlinks: with "bin" merged, "/bin/ls" -> "/usr/bin/ls".
/// `merged` lists the top-level directories that are symlinks to /usr/<same> (see
/// [`detect_usr_merged`]); other paths come back unchanged.
pub fn normalize_usr_merge(path: &str, merged: &[String]) -> String {
    if let Some(rest) = path.strip_prefix('/') {
        let (top, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if merged.iter().any(|m| m == top) {
            return format!("/usr/{top}{tail}");
        }
    }
    path.to_owned()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container scopes and their id: "docker-<64hex>.scope", "libpod-<64hex>(.scope)",
/// "cri-containerd-<64hex>(.scope)", "crio-<64hex>(.scope)".
fn container_scope_id(component: &str) -> Option<&str> {
    let base = component.strip_suffix(".scope").unwrap_or(component);
    ["docker-", "libpod-", "cri-containerd-", "crio-"]
        .iter()
        .find_map(|p| base.strip_prefix(p))
        .filter(|id| is_hex64(id))
}

/// The container id (first 12 hex digits, as docker shows it) from `/proc/PID/cgroup`, cgroup
/// v1 (one line per hierarchy) or v2 ("0::/..."): docker-<id>.scope, /docker/<id>,
/// libpod-<id>, cri-containerd-<id>, crio-<id>, or kubepods .../<id>. First match wins.
pub fn container_id(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, c) in parts.iter().enumerate() {
            let id = container_scope_id(c).or_else(|| {
                let under_runtime = parts[..i]
                    .iter()
                    .any(|p| *p == "docker" || p.starts_with("kubepods") || *p == "libpod");
                (under_runtime && is_hex64(c)).then_some(*c)
            });
            if let Some(id) = id {
                return Some(id[..12].to_ascii_lowercase());
            }
        }
    }
    None
}

/// The systemd unit from `/proc/PID/cgroup`: the last path component ending in ".service" or
/// ".scope" that is not a container scope. Reads the v2 line ("0::/...") or, on v1, the
/// "name=systemd" line; falls back to any line.
pub fn systemd_unit(cgroup: &str) -> Option<String> {
    let path_of = |line: &str| line.splitn(3, ':').nth(2).map(str::to_owned);
    let unit_in = |path: &str| {
        path.split('/')
            .rfind(|c| {
                (c.ends_with(".service") || c.ends_with(".scope"))
                    && c.len() > ".scope".len()
                    && container_scope_id(c).is_none()
                    && !c.starts_with("libpod-conmon-")
            })
            .map(str::to_owned)
    };
    let preferred = cgroup
        .lines()
        .filter(|l| l.starts_with("0::") || l.split(':').nth(1) == Some("name=systemd"));
    for line in preferred.chain(cgroup.lines()) {
        if let Some(unit) = path_of(line).as_deref().and_then(unit_in) {
            return Some(unit);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(pid: u32, comm: &str, ppid: u32, start: u64) -> String {
        // Fields 3.. after the comm; field 22 is the start time.
        let mut f: Vec<String> = vec!["S".into(), ppid.to_string()];
        for n in 5..=21 {
            f.push(n.to_string());
        }
        f.push(start.to_string());
        for n in 23..=52 {
            f.push(n.to_string());
        }
        format!("{pid} ({comm}) {}\n", f.join(" "))
    }

    #[test]
    fn stat_recorded() {
        let text = "1234 (sd-pam) S 1233 1233 1233 0 -1 1077936448 52 0 0 0 0 0 0 0 20 0 1 0 \
                    4521 19304448 1075 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 \
                    0 0 0 0 0 0 0 0 0 0 0 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "sd-pam");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1233);
        assert_eq!(s.start_ticks, 4521);
    }

    #[test]
    fn stat_awkward_comms() {
        for comm in ["(sd-pam)", "a) b", "a b c", ") ) (", "", "x)"] {
            let s = parse_stat(&stat_line(77, comm, 5, 999)).unwrap();
            assert_eq!(s.comm, comm);
            assert_eq!((s.pid, s.ppid, s.start_ticks), (77, 5, 999), "comm {comm:?}");
        }
        // Real kernel thread.
        let s = parse_stat(&stat_line(2, "kthreadd", 0, 0)).unwrap();
        assert_eq!((s.comm.as_str(), s.ppid), ("kthreadd", 0));
    }

    #[test]
    fn stat_damaged() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("x (y) S 1"), None);
        assert_eq!(parse_stat(")12 ("), None);
    }

    #[test]
    fn status_uid() {
        let text = "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\n\
                    PPid:\t1\nTracerPid:\t0\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status_uid(text), Some(1000));
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
        assert_eq!(parse_status_uid("Uid:\tx\n"), None);
    }

    #[test]
    fn btime_and_start_time() {
        let text = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n";
        assert_eq!(parse_btime(text), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
        assert_eq!(start_time_ns(1_700_000_000, 250, 100), 1_700_000_002_500_000_000);
        assert_eq!(start_time_ns(10, 0, 0), 10_000_000_000);
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link("socket:[123456]"), Some(123456));
        assert_eq!(parse_socket_link("pipe:[123]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
        assert_eq!(parse_socket_link("socket:[]"), None);
        assert_eq!(parse_socket_link("anon_inode:[eventfd]"), None);
    }

    #[test]
    fn cmdline() {
        assert_eq!(parse_cmdline(b"/bin/sleep\x005\x00"), ["/bin/sleep", "5"]);
        assert_eq!(parse_cmdline(b"a\x00\x00b\x00"), ["a", "", "b"]);
        assert_eq!(parse_cmdline(b"nginx: worker process"), ["nginx: worker process"]);
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"caf\xe9\x00"), ["caf\u{fffd}"]);
    }

    #[test]
    fn deleted_suffix() {
        let (p, d) = strip_deleted(Path::new("/tmp/x (deleted)"));
        assert_eq!((p, d), (PathBuf::from("/tmp/x"), true));
        let (p, d) = strip_deleted(Path::new("/usr/bin/sleep"));
        assert_eq!((p, d), (PathBuf::from("/usr/bin/sleep"), false));
    }

    #[test]
    fn temp_paths() {
        let homes = vec!["/srv/alice".to_owned(), "/".to_owned()];
        for p in [
            "/tmp/x",
            "/tmp/a/b",
            "/var/tmp/x",
            "/dev/shm/x",
            "/home/bob/.cache/x/y",
            "/root/.cache/z",
            "/srv/alice/.cache/bin",
        ] {
            assert!(is_temp_path(Path::new(p), &homes), "{p}");
        }
        for p in [
            "/usr/bin/sleep",
            "/tmpfoo/x",
            "/home/bob/bin/x",
            "/home/.cache",
            "/opt/.cache/x",
            "/srv/bob/.cache/x",
        ] {
            assert!(!is_temp_path(Path::new(p), &homes), "{p}");
        }
    }

    #[test]
    fn passwd_parse() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                    # comment\n\
                    broken line\n\
                    alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
                    alias:x:1000:1000::/home/alias:/bin/sh\n\
                    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                    +@netgroup::::::\n";
        let p = Passwd::parse(text);
        assert_eq!(p.name(0), Some("root"));
        assert_eq!(p.name(1000), Some("alice"));
        assert_eq!(p.name(65534), Some("nobody"));
        assert_eq!(p.name(4242), None);
        assert!(p.homes.contains(&"/home/alice".to_owned()));
        assert!(p.homes.contains(&"/root".to_owned()));
    }

    #[test]
    fn dpkg_index_keeps_programs_not_documentation() {
        let dir = std::env::temp_dir().join(format!("netvigil-dpkg-index-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("curl.list"),
            "/.\n/usr\n/usr/bin/curl\n/usr/share/doc/curl/copyright\n/usr/share/man/man1/curl.1.gz\n",
        )
        .unwrap();
        fs::write(
            dir.join("coreutils.list"),
            "/bin/ls\n/usr/share/locale/de/LC_MESSAGES/coreutils.mo\n",
        )
        .unwrap();
        let merged = vec!["bin".to_string()];
        let (paths, names) = build_dpkg_index(&dir, &merged);
        let _ = fs::remove_dir_all(&dir);
        let owner = |p: &str| paths.get(&path_key(p)).map(|&i| names[i as usize].as_str());
        assert_eq!(owner("/usr/bin/curl"), Some("curl"));
        assert_eq!(owner("/usr/bin/ls"), Some("coreutils"), "through /usr-merge");
        assert_eq!(owner("/usr/share/doc/curl/copyright"), None);
        assert_eq!(owner("/usr/bin/wget"), None);
        // "/.", "/usr", /usr/bin/curl and /usr/bin/ls: documentation, manuals and translations
        // are left out.
        assert_eq!(paths.len(), 4);
    }

    #[test]
    fn dpkg_list_names() {
        assert_eq!(dpkg_list_package("coreutils.list"), Some("coreutils"));
        assert_eq!(dpkg_list_package("libc6:amd64.list"), Some("libc6"));
        assert_eq!(
            dpkg_list_package("gir1.2-glib-2.0:amd64.list"),
            Some("gir1.2-glib-2.0")
        );
        assert_eq!(dpkg_list_package("coreutils.md5sums"), None);
        assert_eq!(dpkg_list_package("libc6:amd64.conffiles"), None);
        assert_eq!(dpkg_list_package(".list"), None);
    }

    #[test]
    fn usr_merge() {
        let merged: Vec<String> = ["bin", "sbin", "lib", "lib64"].map(String::from).to_vec();
        assert_eq!(normalize_usr_merge("/bin/ls", &merged), "/usr/bin/ls");
        assert_eq!(normalize_usr_merge("/sbin/ip", &merged), "/usr/sbin/ip");
        assert_eq!(
            normalize_usr_merge("/lib/x86_64-linux-gnu/libc.so.6", &merged),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(normalize_usr_merge("/lib64", &merged), "/usr/lib64");
        assert_eq!(normalize_usr_merge("/usr/bin/ls", &merged), "/usr/bin/ls");
        assert_eq!(normalize_usr_merge("/binx/ls", &merged), "/binx/ls");
        assert_eq!(normalize_usr_merge("/lib32/x", &merged), "/lib32/x");
        assert_eq!(normalize_usr_merge("/etc/passwd", &merged), "/etc/passwd");
        // Not merged: unchanged.
        assert_eq!(normalize_usr_merge("/bin/ls", &[]), "/bin/ls");
    }

    #[test]
    fn usr_merge_detection() {
        let dir = std::env::temp_dir().join(format!("netvigil-usrmerge-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("usr/bin")).unwrap();
        fs::create_dir_all(dir.join("sbin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", dir.join("lib")).unwrap();
        std::os::unix::fs::symlink("elsewhere", dir.join("lib64")).unwrap();
        assert_eq!(detect_usr_merged(&dir), ["bin", "lib"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn containers() {
        let cases = [
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("0::/docker/{ID}\n"),
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope\n"
            ),
            format!("0::/kubepods/besteffort/pod0b1c2d3e-aaaa-bbbb-cccc-000000000000/{ID}\n"),
            format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope\n"),
            // cgroup v1, several hierarchies.
            format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"),
        ];
        for c in &cases {
            assert_eq!(container_id(c).as_deref(), Some("3f4e5d6c7b8a"), "{c}");
        }
        for c in [
            "0::/\n",
            "0::/system.slice/nginx.service\n",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "4:memory:/process_api/ebd6ff81e033712bc757dfc99c988147\n0::/\n",
            // 64 hex but not under a container runtime.
            &format!("0::/system.slice/{ID}\n"),
            "0::/system.slice/docker-abc.scope\n",
            "",
        ] {
            assert_eq!(container_id(c), None, "{c}");
        }
    }

    #[test]
    fn units() {
        let cases: [(&str, Option<&str>); 10] = [
            ("0::/system.slice/nginx.service\n", Some("nginx.service")),
            ("0::/init.scope\n", Some("init.scope")),
            (
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n",
                Some("pipewire.service"),
            ),
            (
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope\n",
                Some("app-gnome-firefox-1234.scope"),
            ),
            (
                "0::/user.slice/user-1000.slice/session-3.scope\n",
                Some("session-3.scope"),
            ),
            ("0::/system.slice/foo.service/payload\n", Some("foo.service")),
            ("0::/\n", None),
            ("0::/system.slice\n", None),
            (
                "12:pids:/system.slice/ssh.service\n\
                 11:cpu,cpuacct:/system.slice/ssh.service\n\
                 1:name=systemd:/system.slice/ssh.service\n0::/system.slice/ssh.service\n",
                Some("ssh.service"),
            ),
            (
                "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/ebd6ff81e0\n0::/\n",
                None,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(systemd_unit(text).as_deref(), want, "{text}");
        }
        // A container's scope is not its unit.
        assert_eq!(
            systemd_unit(&format!("0::/system.slice/docker-{ID}.scope\n")),
            None
        );
        assert_eq!(
            systemd_unit(&format!(
                "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope\n"
            )),
            None
        );
        // v1: the name=systemd line is preferred over the first line.
        assert_eq!(
            systemd_unit("5:cpu:/user.slice/x.scope\n1:name=systemd:/system.slice/cron.service\n").as_deref(),
            Some("cron.service")
        );
    }
}
