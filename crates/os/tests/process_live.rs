//! Process attribution against this machine's live /proc (no root needed), and the inode cache
//! against a fake /proc tree.
#![cfg(target_os = "linux")]

use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use os::linux::process::ProcessScanner;

fn unique_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("netvigil-{tag}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn socket_inode_of(fd: i32) -> u64 {
    let link = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let link = link.to_str().unwrap();
    link.strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap()
        .parse()
        .unwrap()
}

/// Kills and reaps a child when dropped, so a failed assertion does not leave it running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the child has exec'd `exe` (right after fork it is still a copy of us).
fn wait_for_exec(pid: u32, exe: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let link = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let link = link.to_string_lossy();
        if link.strip_suffix(" (deleted)").unwrap_or(&link) == exe.to_string_lossy() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "child {pid} did not exec {}",
            exe.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn dpkg_present() -> bool {
    Path::new("/var/lib/dpkg/info").is_dir()
}

#[test]
fn own_socket_belongs_to_this_process() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let inode = socket_inode_of(listener.as_raw_fd());
    let mut scanner = ProcessScanner::new();
    let owners = scanner.owners(&[inode]);
    assert_eq!(owners.found, [(inode, std::process::id())]);
    assert!(owners.scanned_pids >= 1);
    assert_eq!(scanner.scans(), 1);
    // Asked again: answered from the cache.
    let again = scanner.owners(&[inode]);
    assert_eq!(again.found, owners.found);
    assert_eq!(scanner.scans(), 1);
}

#[test]
fn own_process_info() {
    let pid = std::process::id();
    let mut scanner = ProcessScanner::new();
    let info = scanner.info(pid).expect("own process is visible");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(info.pid, pid);
    assert_eq!(info.exe.as_deref(), Some(exe.as_path()));
    assert!(!info.exe_deleted);
    // The checkout may itself live under /tmp (CI clones anywhere): expect what the path says.
    let in_temp = ["/tmp/", "/var/tmp/", "/dev/shm/"]
        .iter()
        .any(|d| exe.starts_with(d))
        || exe.components().any(|c| c.as_os_str() == ".cache");
    assert_eq!(info.exe_in_temp, in_temp, "{}", exe.display());
    let test_binary = exe.file_name().unwrap().to_str().unwrap();
    let first = info.cmdline.first().expect("a command line");
    assert!(
        first.ends_with(test_binary),
        "{first:?} should end with {test_binary:?}"
    );
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(info.uid, Some(uid));
    assert!(info.user.is_some(), "uid {uid} has a name in /etc/passwd");
    let start = info.start_time.expect("a start time");
    let now = now_ns();
    // btime has whole-second precision: allow a little slack in the future.
    assert!(start <= now + 2_000_000_000, "start {start} after now {now}");
    assert!(
        now - start < 3_600_000_000_000,
        "started more than an hour ago: {start}"
    );
    assert!(info.ppid.is_some());
    assert!(!info.name.is_empty());
    // Cached: the same facts again.
    assert_eq!(scanner.info(pid), Some(info));
}

#[test]
fn child_process_and_its_package() {
    let child = Reaped(Command::new("/usr/bin/sleep").arg("5").spawn().unwrap());
    let pid = child.0.id();
    wait_for_exec(pid, Path::new("/usr/bin/sleep"));
    let mut scanner = ProcessScanner::new();
    let info = scanner.info(pid).expect("child is visible");
    assert_eq!(info.ppid, Some(std::process::id()));
    assert_eq!(info.name, "sleep");
    assert_eq!(info.exe.as_deref(), Some(Path::new("/usr/bin/sleep")));
    assert_eq!(info.cmdline, ["/usr/bin/sleep", "5"]);
    assert!(!info.exe_in_temp && !info.exe_deleted);
    if dpkg_present() {
        // dpkg lists it as /bin/sleep (before /usr-merge); the exe link says /usr/bin/sleep.
        assert!(info.package_checked);
        assert_eq!(info.package.as_deref(), Some("coreutils"));
    } else {
        println!("note: dpkg is not installed here; package of /usr/bin/sleep not checked");
    }
    drop(child);
    // Gone (reaped): no facts.
    assert_eq!(scanner.info(pid), None);
}

#[test]
fn deleted_copy_in_temp() {
    let dir = unique_dir("exe");
    let copy = dir.join("sleepy");
    fs::copy("/usr/bin/sleep", &copy).unwrap();
    // Another test thread forking while the copy was open for writing makes exec fail with
    // ETXTBSY until that child execs or exits: retry briefly.
    let mut tries = 0;
    let child = loop {
        match Command::new(&copy).arg("5").spawn() {
            Ok(c) => break Reaped(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("running {}: {e}", copy.display()),
        }
    };
    let pid = child.0.id();
    wait_for_exec(pid, &copy);
    fs::remove_file(&copy).unwrap();

    let mut scanner = ProcessScanner::new();
    let info = scanner.info(pid).expect("child is visible");
    assert_eq!(info.exe.as_deref(), Some(copy.as_path()));
    assert!(info.exe_deleted);
    assert!(info.exe_in_temp, "{} should count as temporary", copy.display());
    assert_eq!(info.package, None);
    assert_eq!(
        info.package_checked,
        dpkg_present() || Path::new("/usr/bin/rpm").exists()
    );
    assert_eq!(info.name, "sleepy");
    drop(child);
    fs::remove_dir_all(&dir).unwrap();
}

/// A fake /proc: `pid -> (start ticks, [fd targets])`.
struct FakeProc {
    root: PathBuf,
}

impl FakeProc {
    fn new() -> Self {
        let root = unique_dir("fakeproc");
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(
            root.join("proc/stat"),
            "cpu 1 2 3\nbtime 1700000000\nprocesses 9\n",
        )
        .unwrap();
        fs::write(
            root.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("dpkg")).unwrap();
        fs::write(
            root.join("dpkg/coreutils.list"),
            "/.\n/bin\n/bin/sleep\n/usr/bin/ls\n",
        )
        .unwrap();
        fs::write(
            root.join("dpkg/libc6:amd64.list"),
            "/.\n/lib/x86_64-linux-gnu/libc.so.6\n",
        )
        .unwrap();
        FakeProc { root }
    }
    fn proc(&self) -> PathBuf {
        self.root.join("proc")
    }
    fn scanner(&self) -> ProcessScanner {
        ProcessScanner::with_root(self.proc(), self.root.join("dpkg"), self.root.join("passwd"))
    }
    fn pid_dir(&self, pid: u32) -> PathBuf {
        self.proc().join(pid.to_string())
    }
    fn set_stat(&self, pid: u32, comm: &str, ppid: u32, start: u64) {
        let mut fields = vec!["S".to_owned(), ppid.to_string()];
        fields.extend((5..=21).map(|n| n.to_string()));
        fields.push(start.to_string());
        fields.extend((23..=52).map(|n| n.to_string()));
        let dir = self.pid_dir(pid);
        fs::create_dir_all(dir.join("fd")).unwrap();
        fs::write(dir.join("stat"), format!("{pid} ({comm}) {}\n", fields.join(" "))).unwrap();
    }
    fn add_fd(&self, pid: u32, fd: u32, target: &str) {
        std::os::unix::fs::symlink(target, self.pid_dir(pid).join("fd").join(fd.to_string())).unwrap();
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn fake_proc_incremental_cache() {
    let fake = FakeProc::new();
    fake.set_stat(100, "nginx", 1, 500);
    fake.add_fd(100, 3, "socket:[1000]");
    fake.add_fd(100, 4, "pipe:[77]");
    fake.add_fd(100, 5, "/dev/null");
    fake.set_stat(200, "sshd", 1, 600);
    fake.add_fd(200, 3, "socket:[2000]");
    // A forked worker shares 1000: the lowest pid keeps it.
    fake.set_stat(300, "nginx", 100, 700);
    fake.add_fd(300, 7, "socket:[1000]");
    fake.add_fd(300, 8, "socket:[3000]");
    // Not a pid: ignored.
    fs::create_dir_all(fake.proc().join("sys")).unwrap();

    let mut s = fake.scanner();
    assert_eq!(s.scans(), 0);
    let o = s.owners(&[1000, 2000, 0, 1000]);
    assert_eq!(o.found, [(1000, 100), (2000, 200)]);
    assert_eq!((o.scanned_pids, o.unreadable_pids), (3, 0));
    assert_eq!(s.scans(), 1);
    assert_eq!(s.cached_pids(), [100, 200, 300]);

    // Known inodes (including one found by the first scan but not asked for then): no rescan.
    let o = s.owners(&[2000, 1000, 3000]);
    assert_eq!(o.found, [(2000, 200), (1000, 100), (3000, 300)]);
    assert_eq!(s.scans(), 1);

    // An inode that appears later: exactly one rescan, then cached.
    fake.add_fd(200, 4, "socket:[2001]");
    let o = s.owners(&[1000, 2000, 2001]);
    assert_eq!(o.found, [(1000, 100), (2000, 200), (2001, 200)]);
    assert_eq!(s.scans(), 2);
    s.owners(&[1000, 2000, 2001]);
    assert_eq!(s.scans(), 2);

    // Several new inodes in one call: still one rescan.
    fake.add_fd(100, 6, "socket:[1001]");
    fake.add_fd(300, 9, "socket:[3001]");
    let o = s.owners(&[1001, 3001]);
    assert_eq!(o.found, [(1001, 100), (3001, 300)]);
    assert_eq!(s.scans(), 3);

    // An inode nobody visible holds (kernel socket, other user): one rescan, then it does not
    // trigger rescans by itself.
    let o = s.owners(&[1000, 9999]);
    assert_eq!(o.found, [(1000, 100)]);
    assert_eq!(s.scans(), 4);
    s.owners(&[1000, 9999]);
    s.owners(&[9999]);
    assert_eq!(s.scans(), 4);

    // A pid that disappears is dropped: its inode is looked for again (once) and not found.
    fs::remove_dir_all(fake.pid_dir(200)).unwrap();
    let o = s.owners(&[1000, 2000, 2001]);
    assert_eq!(o.found, [(1000, 100)]);
    assert_eq!(s.scans(), 5);
    assert_eq!(s.cached_pids(), [100, 300]);
    assert_eq!(o.scanned_pids, 2);
    s.owners(&[1000, 2000, 2001]);
    assert_eq!(s.scans(), 5);

    // A reused pid (same number, new start time) is not trusted: rescan.
    fs::remove_dir_all(fake.pid_dir(300)).unwrap();
    fake.set_stat(300, "bash", 1, 9000);
    fake.add_fd(300, 3, "socket:[4000]");
    let o = s.owners(&[3000, 4000]);
    assert_eq!(o.found, [(4000, 300)]);
    assert_eq!(s.scans(), 6);

    // The holder of a shared socket exits: the other holder gets it.
    fake.add_fd(300, 4, "socket:[1000]");
    s.owners(&[4000]);
    assert_eq!(s.scans(), 6);
    fs::remove_dir_all(fake.pid_dir(100)).unwrap();
    let o = s.owners(&[1000]);
    assert_eq!(o.found, [(1000, 300)]);
    assert_eq!(s.scans(), 7);
}

#[test]
fn fake_proc_info_and_cache_by_start_time() {
    let fake = FakeProc::new();
    fake.set_stat(42, "a) b", 7, 250);
    let dir = fake.pid_dir(42);
    std::os::unix::fs::symlink("/usr/bin/sleep", dir.join("exe")).unwrap();
    fs::write(dir.join("cmdline"), b"sleep\x00100\x00").unwrap();
    fs::write(dir.join("status"), "Name:\tsleep\nUid:\t1000\t1000\t1000\t1000\n").unwrap();
    fs::write(
        dir.join("cgroup"),
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/demo.service\n",
    )
    .unwrap();

    let mut s = fake.scanner();
    let info = s.info(42).unwrap();
    assert_eq!(info.pid, 42);
    assert_eq!(info.ppid, Some(7));
    assert_eq!(info.name, "a) b");
    assert_eq!(info.exe.as_deref(), Some(Path::new("/usr/bin/sleep")));
    assert_eq!(info.cmdline, ["sleep", "100"]);
    assert_eq!(info.uid, Some(1000));
    assert_eq!(info.user.as_deref(), Some("alice"));
    // btime 1700000000 + 250 ticks.
    // SAFETY: sysconf only reads a configuration value.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64;
    assert_eq!(
        info.start_time,
        Some(1_700_000_000_000_000_000 + 250 * 1_000_000_000 / tck)
    );
    assert_eq!(info.unit.as_deref(), Some("demo.service"));
    assert_eq!(info.container, None);
    assert!(!info.exe_deleted && !info.exe_in_temp);
    assert!(info.package_checked);
    // Listed by the fake dpkg as /bin/sleep: found through /usr-merge where / is merged.
    let merged = fs::read_link("/bin").is_ok_and(|t| t.ends_with("usr/bin"));
    if merged {
        assert_eq!(info.package.as_deref(), Some("coreutils"));
    }

    // Same pid, same start time: cached (a changed command line is not re-read).
    fs::write(dir.join("cmdline"), b"changed\x00").unwrap();
    assert_eq!(s.info(42).unwrap().cmdline, ["sleep", "100"]);

    // Same pid, new start time: a different process, read afresh.
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    fs::write(
        dir.join("cgroup"),
        format!("0::/system.slice/docker-{id}.scope\n"),
    )
    .unwrap();
    fs::write(dir.join("status"), "Uid:\t0\t0\t0\t0\n").unwrap();
    fs::remove_file(dir.join("exe")).unwrap();
    std::os::unix::fs::symlink("/dev/shm/x (deleted)", dir.join("exe")).unwrap();
    fake.set_stat(42, "x", 1, 900);
    let info = s.info(42).unwrap();
    assert_eq!(info.cmdline, ["changed"]);
    assert_eq!(info.name, "x");
    assert_eq!(info.user.as_deref(), Some("root"));
    assert_eq!(info.container.as_deref(), Some("0123456789ab"));
    assert_eq!(info.unit, None);
    assert_eq!(info.exe.as_deref(), Some(Path::new("/dev/shm/x")));
    assert!(info.exe_deleted && info.exe_in_temp);
    assert_eq!(info.package, None);
    assert!(info.package_checked);

    // Missing process, and a kernel thread (no exe, empty cmdline).
    assert_eq!(s.info(4242), None);
    fake.set_stat(2, "kthreadd", 0, 1);
    let k = s.info(2).unwrap();
    assert_eq!(
        (k.ppid, k.exe, k.cmdline.len(), k.package_checked),
        (None, None, 0, false)
    );
}

/// Prints how long owners() takes for every inet socket on this machine, cold and warm (run
/// with `--nocapture` to see the figures).
#[test]
fn timing_all_sockets() {
    // Some sockets of our own so that there is something to find.
    let listeners: Vec<TcpListener> = (0..200)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9).and_then(|i| i.parse::<u64>().ok()) {
                inodes.push(inode);
            }
        }
    }
    let mut s = ProcessScanner::new();
    let t = Instant::now();
    let cold = s.owners(&inodes);
    let cold_time = t.elapsed();
    let t = Instant::now();
    let warm = s.owners(&inodes);
    let warm_time = t.elapsed();
    println!(
        "owners(): {} socket inodes, {} owned, {} pids scanned, {} unreadable; cold {cold_time:?}, warm {warm_time:?} ({} rescans)",
        inodes.len(),
        cold.found.len(),
        cold.scanned_pids,
        cold.unreadable_pids,
        s.scans()
    );
    assert_eq!(cold.found, warm.found);
    assert!(cold.found.len() >= listeners.len());

    // info() for every process visible, cold (first call builds the dpkg index) and warm.
    let pids: Vec<u32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let t = Instant::now();
    let first = s.info(std::process::id());
    let index_time = t.elapsed();
    assert!(first.is_some());
    let t = Instant::now();
    let seen = pids.iter().filter(|&&p| s.info(p).is_some()).count();
    let cold_info = t.elapsed();
    let t = Instant::now();
    pids.iter().for_each(|&p| drop(s.info(p)));
    let warm_info = t.elapsed();
    println!(
        "info(): first call (package index) {index_time:?}; {seen} processes cold {cold_info:?}, warm {warm_info:?}"
    );
}
