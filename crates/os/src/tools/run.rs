//! Runs an OS tool with a time limit and a cap on what it may print.
//!
//! The tool gets no standard input; its standard output and error are read by two threads
//! (so a tool that fills one pipe cannot block on it), each keeping at most `max_output`
//! bytes and draining the rest. A tool still running at the deadline is killed and reported
//! as [`ToolError::Timeout`].

use std::fmt;
use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a finished tool printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    /// The exit code; `None` when a signal ended the tool.
    pub code: Option<i32>,
    /// Standard output, decoded lossily as UTF-8.
    pub stdout: String,
    pub stderr: String,
    /// Output beyond `max_output` was dropped.
    pub truncated: bool,
}

/// Why a tool gave no output.
#[derive(Debug)]
pub enum ToolError {
    /// The program is not installed (or not on `PATH`).
    NotFound { program: String },
    /// It could not be started for another reason.
    Spawn { program: String, source: io::Error },
    /// It ran past the time limit and was killed.
    Timeout { program: String, after: Duration },
    /// Waiting for it failed.
    Wait { program: String, source: io::Error },
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::NotFound { program } => write!(
                f,
                "`{program}` is not installed or not on PATH; install it (it ships with the \
                 operating system) or put its directory on PATH"
            ),
            ToolError::Spawn { program, source } => write!(f, "cannot start `{program}`: {source}"),
            ToolError::Timeout { program, after } => write!(
                f,
                "`{program}` did not finish within {} ms and was stopped; the machine may be \
                 overloaded: try again, or raise the tool timeout",
                after.as_millis()
            ),
            ToolError::Wait { program, source } => write!(f, "waiting for `{program}` failed: {source}"),
        }
    }
}

impl std::error::Error for ToolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ToolError::Spawn { source, .. } | ToolError::Wait { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Runs `program args...` with the extra environment `env`, waits at most `timeout`, and keeps
/// at most `max_output` bytes of each stream.
pub fn run_tool(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
    max_output: usize,
) -> Result<ToolOutput, ToolError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ToolError::NotFound {
            program: program.to_string(),
        },
        _ => ToolError::Spawn {
            program: program.to_string(),
            source,
        },
    })?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || -> (Vec<u8>, bool) {
            let mut kept = Vec::new();
            let mut truncated = false;
            let Some(mut pipe) = pipe else {
                return (kept, truncated);
            };
            let mut buf = [0u8; 16 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = max_output.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                        truncated |= n > room;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            (kept, truncated)
        })
    };
    let out_thread = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err_thread = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                // The pipes close with the tool (unless it left children holding them; the
                // reader threads are then left to finish on their own).
                return Err(ToolError::Timeout {
                    program: program.to_string(),
                    after: timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolError::Wait {
                    program: program.to_string(),
                    source,
                });
            }
        }
    };
    let (stdout, t1) = out_thread.join().unwrap_or_default();
    let (stderr, t2) = err_thread.join().unwrap_or_default();
    Ok(ToolOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        truncated: t1 || t2,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn output_code_and_environment() {
        let out = run_tool(
            "sh",
            &["-c", "echo \"out $NV_X\"; echo err >&2; exit 3"],
            &[("NV_X", "é")],
            Duration::from_secs(10),
            1 << 20,
        )
        .unwrap();
        assert_eq!(out.stdout, "out é\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.code, Some(3));
        assert!(!out.truncated);
    }

    #[test]
    fn large_output_is_capped_without_blocking() {
        // 4 MiB through a 64 KiB pipe: the reader must drain it or the tool blocks.
        let out = run_tool(
            "sh",
            &["-c", "head -c 4194304 /dev/zero"],
            &[],
            Duration::from_secs(20),
            1000,
        )
        .unwrap();
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.truncated);
        assert_eq!(out.code, Some(0));
    }

    #[test]
    fn slow_tool_is_killed() {
        let start = Instant::now();
        let e = run_tool("sleep", &["20"], &[], Duration::from_millis(200), 1000).unwrap_err();
        assert!(matches!(e, ToolError::Timeout { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("did not finish within 200 ms"), "{e}");
    }

    #[test]
    fn missing_tool_says_so() {
        let e = run_tool("netvigil-no-such-tool", &[], &[], Duration::from_secs(1), 10).unwrap_err();
        assert!(matches!(e, ToolError::NotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("not installed"), "{e}");
    }
}
