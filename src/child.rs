//! What every child process of t2s needs, whoever starts it (the `command` stage, the worker
//! launcher): output read in lines of bounded length, a kill that reaches everything the child
//! started, and a death that follows t2s's.
//!
//! - Lines are cut at [`MAX_LINE_BYTES`] with a marker saying how much was dropped: a child
//!   printing 1 GB without a newline must not cost gigabytes here, nor become an error text the
//!   tracking DB refuses.
//! - A node's processes carry a token in their environment ([`TOKEN_VAR`]); [`kill_tagged`]
//!   finds them through `/proc/PID/environ` after they left the node's process group (`setsid`)
//!   and were re-parented by a double fork, which a process-group kill cannot reach. A process
//!   that clears its environment escapes this too; cgroups would catch it, but t2s runs
//!   unprivileged where it has no cgroup of its own.
//! - [`die_with_parent`]: `PR_SET_PDEATHSIG` makes the kernel kill the child when t2s dies,
//!   even by `kill -9`, so no orphan keeps writing into an area a rerun uses.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;

/// Longest line kept from a child's output, in bytes; the rest of the line is dropped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The environment variable holding a node's token (see [`kill_tagged`]).
pub const TOKEN_VAR: &str = "T2S_NODE_TOKEN";

/// Lines of a child's output, each at most `max` bytes (then marked as truncated), decoded
/// lossily: a line that is not text, or is huge, must not stop the reader (the child would
/// block on a full pipe) nor take unbounded memory.
pub struct BoundedLines<R> {
    reader: BufReader<R>,
    max: usize,
}

/// [`BoundedLines`] of `r`, cut at [`MAX_LINE_BYTES`].
pub fn lines<R: Read>(r: R) -> BoundedLines<R> {
    BoundedLines {
        reader: BufReader::new(r),
        max: MAX_LINE_BYTES,
    }
}

impl<R: Read> BoundedLines<R> {
    /// The same reader with another line limit.
    pub fn max_bytes(self, max: usize) -> Self {
        Self { max, ..self }
    }
}

impl<R: Read> Iterator for BoundedLines<R> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut kept = Vec::new();
        let mut dropped = 0usize;
        let mut seen = false;
        // The line ends in `\r` (a CRLF line): not part of its text, kept or dropped.
        let mut last_cr = false;
        loop {
            let avail = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if avail.is_empty() {
                break;
            }
            seen = true;
            let (chunk, used, end) = match avail.iter().position(|b| *b == b'\n') {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            if let Some(b) = chunk.last() {
                last_cr = *b == b'\r';
            }
            let room = self.max.saturating_sub(kept.len()).min(chunk.len());
            kept.extend_from_slice(&chunk[..room]);
            dropped += chunk.len() - room;
            self.reader.consume(used);
            if end {
                break;
            }
        }
        if !seen {
            return None;
        }
        if last_cr {
            if dropped > 0 {
                dropped -= 1;
            } else {
                kept.pop();
            }
        }
        let mut line = String::from_utf8_lossy(&kept).into_owned();
        if dropped > 0 {
            line.push_str(&format!(
                " [... line truncated: {dropped} more bytes not shown]"
            ));
        }
        Some(line)
    }
}

/// Read `r`'s lines on a thread of its own, sending `wrap(Some(line))` for each and
/// `wrap(None)` at the end. The thread is detached on purpose: a process that escaped every
/// kill may hold the pipe open, and the caller must be able to stop waiting for it.
pub fn forward_lines<R, T>(r: R, tx: Sender<T>, wrap: fn(Option<String>) -> T)
where
    R: Read + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        for line in lines(r) {
            if tx.send(wrap(Some(line))).is_err() {
                return;
            }
        }
        let _ = tx.send(wrap(None));
    });
}

/// A token no other node of any t2s on this machine holds (pid, counter, clock).
pub fn new_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// SIGKILL every process (but this one) whose environment holds `TOKEN_VAR=token`; returns how
/// many were signalled. Repeats until a pass finds none, since a process may fork between the
/// scan and its kill. Zombies have an empty environment and are not counted.
pub fn kill_tagged(token: &str) -> usize {
    let needle = format!("{TOKEN_VAR}={token}").into_bytes();
    let me = std::process::id();
    let mut total = 0;
    // Each pass kills what the previous one missed; a fork bomb outrunning 100 passes is
    // beyond what this guards against (a process limit is the tool for that).
    for _ in 0..100 {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return total;
        };
        let mut killed = 0;
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(env) = std::fs::read(e.path().join("environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|var| var == needle.as_slice()) {
                if let Ok(p) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill(2) with a pid read from /proc has no memory effects.
                    if unsafe { libc::kill(p, libc::SIGKILL) } == 0 {
                        killed += 1;
                    }
                }
            }
        }
        total += killed;
        if killed == 0 {
            break;
        }
    }
    total
}

/// SIGKILL a process group.
pub fn kill_group(pgid: u32) {
    if let Ok(p) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill(2) has no memory effects; a negative pid names the group.
        unsafe {
            libc::kill(-p, libc::SIGKILL);
        }
    }
}

/// Make the child die when this process does: `PR_SET_PDEATHSIG` (SIGKILL) between fork and
/// exec, then a check that the parent is still this process (it may have died before the
/// `prctl`, and the signal would then never come). The signal follows the *thread* that
/// spawns the child: spawn from a thread that lives until the child is waited for.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid) and builds an error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 30): a 1 GB line without a newline was read whole; lines are cut at
    /// the limit with a marker, and the next line is read normally.
    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let mut data = vec![b'x'; 10_000];
        data.extend_from_slice(b"\r\nok\n\xff\xfe bad\r\nlast");
        let got: Vec<String> = lines(data.as_slice()).max_bytes(100).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            format!(
                "{} [... line truncated: 9900 more bytes not shown]",
                "x".repeat(100)
            )
        );
        assert_eq!(&got[1..], ["ok", "\u{fffd}\u{fffd} bad", "last"]);
    }

    #[test]
    fn a_huge_line_from_a_stream_stays_bounded() {
        // 64 MiB of one line through a reader that never holds it: the kept line is the limit.
        let big = std::io::repeat(b'y').take(64 << 20);
        let got: Vec<String> = lines(big).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].len() < MAX_LINE_BYTES + 100);
        assert!(got[0].ends_with(&format!(
            "{} more bytes not shown]",
            (64usize << 20) - MAX_LINE_BYTES
        )));
    }

    #[test]
    fn tokens_are_unique() {
        assert_ne!(new_token(), new_token());
    }
}
