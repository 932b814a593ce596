//! The Windows socket table: `GetExtendedTcpTable` (`TCP_TABLE_OWNER_PID_ALL`) and
//! `GetExtendedUdpTable` (`UDP_TABLE_OWNER_PID`) for IPv4 and IPv6 give every socket with its
//! owning pid; the process list comes from a Toolhelp snapshot, the executable path and start
//! time from `OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION)` with
//! `QueryFullProcessImageNameW` and `GetProcessTimes`, and the Authenticode status from
//! `WinVerifyTrust`. When the IP Helper call fails, `netstat -ano` and `tasklist /fo csv /nh`
//! are read instead.
//!
//! WRITTEN AGAINST THE DOCUMENTED API AND NEVER COMPILED: the machines that build netvigil
//! have no Windows standard library. Everything that can be kept out of this file is: the row
//! conversions ([`crate::tools::iphlp`]), the snapshot assembly
//! ([`crate::tools::assemble::windows_snapshot`]) and the fallback parsers are plain code,
//! tested on Linux. This file only makes the calls.
//!
//! Privilege: the tables need none. Without administrator rights, processes of other users
//! and protected processes cannot be opened: their sockets keep their pid, but the process
//! has no executable path and its signature is not checked.

use crate::tools::assemble::windows_snapshot;
use crate::tools::iphlp::{authenticode_package, mib_v4, mib_v6, tcp_row, udp_row};
use crate::tools::netstat::{NetstatSocket, parse_netstat_windows};
use crate::tools::ps::parse_tasklist_csv;
use crate::tools::run::{ToolError, run_tool};
use engine::sockets::{ProcessInfo, SocketSnapshot, SocketTable};
use std::collections::HashMap;
use std::ffi::{OsString, c_void};
use std::fmt;
use std::mem::{offset_of, size_of};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{Duration, SystemTime};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_INSUFFICIENT_BUFFER, FILETIME, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, GetExtendedUdpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCP6TABLE_OWNER_PID,
    MIB_TCPROW_OWNER_PID, MIB_TCPTABLE_OWNER_PID, MIB_UDP6ROW_OWNER_PID, MIB_UDP6TABLE_OWNER_PID,
    MIB_UDPROW_OWNER_PID, MIB_UDPTABLE_OWNER_PID, TCP_TABLE_OWNER_PID_ALL, UDP_TABLE_OWNER_PID,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::WinTrust::{
    WINTRUST_ACTION_GENERIC_VERIFY_V2, WINTRUST_DATA, WINTRUST_DATA_0, WINTRUST_FILE_INFO,
    WTD_CACHE_ONLY_URL_RETRIEVAL, WTD_CHOICE_FILE, WTD_REVOKE_NONE, WTD_STATEACTION_CLOSE,
    WTD_STATEACTION_VERIFY, WTD_UI_NONE, WinVerifyTrust,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION,
    QueryFullProcessImageNameW,
};

/// Why a Windows snapshot failed (both the API and the netstat fallback).
#[derive(Debug)]
pub enum WinError {
    /// `GetExtendedTcpTable`/`GetExtendedUdpTable` failed with this Win32 error, and so did
    /// `netstat -ano`.
    Table {
        api: &'static str,
        code: u32,
        fallback: ToolError,
    },
    /// The fallback ran and failed.
    Fallback {
        api: &'static str,
        code: u32,
        detail: String,
    },
}

impl fmt::Display for WinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WinError::Table { api, code, fallback } => write!(
                f,
                "cannot read the socket table: {api} failed (Win32 error {code}) and the \
                 `netstat -ano` fallback too: {fallback}"
            ),
            WinError::Fallback { api, code, detail } => write!(
                f,
                "cannot read the socket table: {api} failed (Win32 error {code}) and `netstat \
                 -ano` failed: {detail}; run `netstat -ano` in a terminal to see why"
            ),
        }
    }
}

impl std::error::Error for WinError {}

/// Reads a table with the two-call pattern of the IP Helper API (ask for the size, then fill),
/// retrying while the table grows. Returns the buffer as 8-byte words (aligned for the table).
fn read_table(mut call: impl FnMut(*mut c_void, *mut u32) -> u32) -> Result<Vec<u64>, u32> {
    let mut buf: Vec<u64> = Vec::new();
    let mut size: u32 = 0;
    for _ in 0..8 {
        let p = if buf.is_empty() {
            ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast::<c_void>()
        };
        match call(p, &mut size) {
            0 if !buf.is_empty() => return Ok(buf),
            0 => return Ok(vec![0]), // an empty table (a count of 0)
            ERROR_INSUFFICIENT_BUFFER => {
                // Room for a few more rows than asked: the table may grow before the next call.
                buf = vec![0u64; (size as usize).div_ceil(8) + 64];
                size = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
            }
            e => return Err(e),
        }
    }
    Err(ERROR_INSUFFICIENT_BUFFER)
}

/// The rows of a `MIB_*TABLE_OWNER_PID` buffer: `dwNumEntries`, then `rows_at` bytes in, the
/// rows. The count is bounded by the buffer.
///
/// Only called with the IP Helper row types, which are `repr(C)` structs of `u32` and byte
/// arrays: every bit pattern is a valid value.
fn rows<T: Copy>(buf: &[u64], rows_at: usize) -> Vec<T> {
    // SAFETY: a `[u64]` is readable as `len * 8` initialised bytes for as long as `buf` lives.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
    let Some(count) = bytes
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return Vec::new();
    };
    let fit = bytes.len().saturating_sub(rows_at) / size_of::<T>();
    (0..count.min(fit))
        .map(|i| {
            // SAFETY: `rows_at + (i + 1) * size_of::<T>() <= bytes.len()` (bounded by `fit`);
            // T is a plain-old-data row type (see above); read_unaligned needs no alignment.
            unsafe { ptr::read_unaligned(bytes.as_ptr().add(rows_at + i * size_of::<T>()).cast::<T>()) }
        })
        .collect()
}

/// Every TCP and UDP socket, IPv4 and IPv6, with owning pids. `Err((api, code))` names the
/// call that failed.
fn ip_helper_rows() -> Result<Vec<NetstatSocket>, (&'static str, u32)> {
    let mut out = Vec::new();
    for (family, v6) in [(AF_INET, false), (AF_INET6, true)] {
        let buf = read_table(|p, size| {
            // SAFETY: `p` is null (size query) or points to `*size` writable bytes; `size` is
            // a valid u32 for the call.
            unsafe { GetExtendedTcpTable(p, size, 0, u32::from(family), TCP_TABLE_OWNER_PID_ALL, 0) }
        })
        .map_err(|e| ("GetExtendedTcpTable", e))?;
        if v6 {
            for r in rows::<MIB_TCP6ROW_OWNER_PID>(&buf, offset_of!(MIB_TCP6TABLE_OWNER_PID, table)) {
                let local = mib_v6(r.ucLocalAddr, r.dwLocalScopeId, r.dwLocalPort);
                let remote = mib_v6(r.ucRemoteAddr, r.dwRemoteScopeId, r.dwRemotePort);
                out.push(tcp_row(local, remote, r.dwState, r.dwOwningPid));
            }
        } else {
            for r in rows::<MIB_TCPROW_OWNER_PID>(&buf, offset_of!(MIB_TCPTABLE_OWNER_PID, table)) {
                let local = mib_v4(r.dwLocalAddr, r.dwLocalPort);
                let remote = mib_v4(r.dwRemoteAddr, r.dwRemotePort);
                out.push(tcp_row(local, remote, r.dwState, r.dwOwningPid));
            }
        }
        let buf = read_table(|p, size| {
            // SAFETY: as above.
            unsafe { GetExtendedUdpTable(p, size, 0, u32::from(family), UDP_TABLE_OWNER_PID, 0) }
        })
        .map_err(|e| ("GetExtendedUdpTable", e))?;
        if v6 {
            for r in rows::<MIB_UDP6ROW_OWNER_PID>(&buf, offset_of!(MIB_UDP6TABLE_OWNER_PID, table)) {
                out.push(udp_row(
                    mib_v6(r.ucLocalAddr, r.dwLocalScopeId, r.dwLocalPort),
                    r.dwOwningPid,
                ));
            }
        } else {
            for r in rows::<MIB_UDPROW_OWNER_PID>(&buf, offset_of!(MIB_UDPTABLE_OWNER_PID, table)) {
                out.push(udp_row(mib_v4(r.dwLocalAddr, r.dwLocalPort), r.dwOwningPid));
            }
        }
    }
    Ok(out)
}

/// pid, parent pid and image name of every process (Toolhelp snapshot); empty on failure.
fn process_list() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    // SAFETY: no preconditions; the result is checked for INVALID_HANDLE_VALUE.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE || snap.is_null() {
        return out;
    }
    let mut e = PROCESSENTRY32W {
        dwSize: size_of::<PROCESSENTRY32W>() as u32,
        ..PROCESSENTRY32W::default()
    };
    // SAFETY: `snap` is a valid snapshot handle and `e` a PROCESSENTRY32W with dwSize set.
    let mut ok = unsafe { Process32FirstW(snap, &mut e) } != 0;
    while ok {
        let len = e
            .szExeFile
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(e.szExeFile.len());
        let name = OsString::from_wide(&e.szExeFile[..len])
            .to_string_lossy()
            .into_owned();
        out.push((e.th32ProcessID, e.th32ParentProcessID, name));
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap, &mut e) } != 0;
    }
    // SAFETY: `snap` is a handle this function opened and closes once.
    unsafe { CloseHandle(snap) };
    out
}

/// FILETIME (100 ns since 1601) to nanoseconds since 1970.
fn filetime_nanos(ft: FILETIME) -> Option<i64> {
    let t = (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime);
    let since_1970 = t.checked_sub(116_444_736_000_000_000)?;
    i64::try_from(since_1970).ok()?.checked_mul(100)
}

/// Executable path and start time of a process, where it may be opened.
fn process_details(pid: u32) -> (Option<PathBuf>, Option<i64>) {
    // SAFETY: no preconditions; a null result means the process cannot be opened.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return (None, None);
    }
    let mut buf = vec![0u16; 32_768];
    let mut len = buf.len() as u32;
    // SAFETY: `h` is an open process handle; `buf` has `len` writable u16s.
    let exe = if unsafe { QueryFullProcessImageNameW(h, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) } != 0
    {
        let len = (len as usize).min(buf.len());
        Some(PathBuf::from(OsString::from_wide(&buf[..len])))
    } else {
        None
    };
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: `h` is an open process handle; the four FILETIMEs are writable.
    let start = if unsafe { GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user) } != 0 {
        filetime_nanos(created)
    } else {
        None
    };
    // SAFETY: `h` was opened above and is closed once.
    unsafe { CloseHandle(h) };
    (exe, start)
}

/// `WinVerifyTrust` on the file alone (embedded signature), without network retrieval.
fn verify_trust(path: &Path) -> i32 {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    let mut file = WINTRUST_FILE_INFO {
        cbStruct: size_of::<WINTRUST_FILE_INFO>() as u32,
        pcwszFilePath: wide.as_ptr(),
        hFile: ptr::null_mut(),
        pgKnownSubject: ptr::null_mut(),
    };
    let mut data = WINTRUST_DATA {
        cbStruct: size_of::<WINTRUST_DATA>() as u32,
        dwUIChoice: WTD_UI_NONE,
        fdwRevocationChecks: WTD_REVOKE_NONE,
        dwUnionChoice: WTD_CHOICE_FILE,
        Anonymous: WINTRUST_DATA_0 { pFile: &mut file },
        dwStateAction: WTD_STATEACTION_VERIFY,
        dwProvFlags: WTD_CACHE_ONLY_URL_RETRIEVAL,
        ..WINTRUST_DATA::default()
    };
    let mut action = WINTRUST_ACTION_GENERIC_VERIFY_V2;
    // SAFETY: `data` and `file` are initialised as the API documents for WTD_CHOICE_FILE, and
    // `wide` (the NUL-terminated path) outlives both calls.
    let result = unsafe {
        WinVerifyTrust(
            ptr::null_mut(),
            &mut action,
            (&mut data as *mut WINTRUST_DATA).cast(),
        )
    };
    data.dwStateAction = WTD_STATEACTION_CLOSE;
    // SAFETY: the same structures, closing the state the first call opened.
    unsafe {
        WinVerifyTrust(
            ptr::null_mut(),
            &mut action,
            (&mut data as *mut WINTRUST_DATA).cast(),
        )
    };
    result
}

/// The Windows socket table. Caches Authenticode results per executable (path, size and
/// modification time).
#[derive(Debug)]
pub struct WindowsSockets {
    /// Time limit for the fallback tools. Default 20 s.
    pub tool_timeout: Duration,
    /// WinVerifyTrust calls per snapshot at most. Default 16.
    pub verify_per_snapshot: usize,
    signatures: HashMap<(PathBuf, u64, Option<SystemTime>), (Option<String>, bool)>,
    windows_dir: String,
}

impl Default for WindowsSockets {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowsSockets {
    pub fn new() -> Self {
        WindowsSockets {
            tool_timeout: Duration::from_secs(20),
            verify_per_snapshot: 16,
            signatures: HashMap::new(),
            windows_dir: std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".to_string()),
        }
    }

    fn package(&mut self, exe: &Path, budget: &mut usize) -> (Option<String>, bool) {
        let Ok(meta) = std::fs::metadata(exe) else {
            return (None, false);
        };
        let key = (exe.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(p) = self.signatures.get(&key) {
            return p.clone();
        }
        if *budget == 0 {
            return (None, false);
        }
        *budget -= 1;
        let p = authenticode_package(verify_trust(exe), &exe.to_string_lossy(), &self.windows_dir);
        if self.signatures.len() >= 4096 {
            self.signatures.clear();
        }
        self.signatures.insert(key, p.clone());
        p
    }

    /// The netstat/tasklist fallback.
    fn fallback(
        &self,
        api: &'static str,
        code: u32,
    ) -> Result<(Vec<NetstatSocket>, Vec<ProcessInfo>), WinError> {
        let out = run_tool("netstat", &["-ano"], &[], self.tool_timeout, 64 << 20)
            .map_err(|fallback| WinError::Table { api, code, fallback })?;
        if out.code != Some(0) {
            return Err(WinError::Fallback {
                api,
                code,
                detail: out.stderr.trim().chars().take(300).collect(),
            });
        }
        let rows = parse_netstat_windows(&out.stdout).entries;
        let procs = run_tool(
            "tasklist",
            &["/fo", "csv", "/nh"],
            &[],
            self.tool_timeout,
            16 << 20,
        )
        .map(|o| parse_tasklist_csv(&o.stdout).entries)
        .unwrap_or_default()
        .into_iter()
        .map(|t| ProcessInfo {
            pid: t.pid,
            name: t.image,
            ..ProcessInfo::default()
        })
        .collect();
        Ok((rows, procs))
    }
}

impl SocketTable for WindowsSockets {
    type Error = WinError;

    fn snapshot(&mut self, now: i64) -> Result<SocketSnapshot, WinError> {
        let (rows, mut processes) = match ip_helper_rows() {
            Ok(rows) => {
                let procs = process_list()
                    .into_iter()
                    .map(|(pid, ppid, name)| ProcessInfo {
                        pid,
                        ppid: Some(ppid),
                        name,
                        ..ProcessInfo::default()
                    })
                    .collect();
                (rows, procs)
            }
            Err((api, code)) => self.fallback(api, code)?,
        };
        let owners: std::collections::HashSet<u32> = rows.iter().filter_map(|r| r.pid).collect();
        let mut budget = self.verify_per_snapshot;
        for p in processes
            .iter_mut()
            .filter(|p| owners.contains(&p.pid) && p.pid > 4)
        {
            let (exe, start) = process_details(p.pid);
            p.start_time = start;
            if let Some(exe) = exe {
                (p.package, p.package_checked) = self.package(&exe, &mut budget);
                let cmd = exe.to_string_lossy().into_owned();
                p.cmdline = vec![cmd];
                p.exe = Some(exe);
            }
        }
        Ok(windows_snapshot(now, &rows, &processes))
    }
}
