//! Child processes: spawning each component into its own process group with its output
//! in a log file, stopping it (SIGTERM, then SIGKILL), and the watchdog that stops them
//! when the test process dies without running `Drop`.
//!
//! Why a watchdog rather than `prctl(PR_SET_PDEATHSIG)`: the death signal needs `unsafe`
//! (`pre_exec`), which the workspace forbids, and it fires when the *thread* that spawned
//! the child exits, not the process — cargo runs each test on its own thread, so a cluster
//! shared between tests (or restarted from another thread) would lose its children early.
//! The watchdog is one `sh` per cluster, in its own process group (so Ctrl-C in a terminal
//! does not reach it), reading process-group ids from a pipe whose only writer is this
//! process. When the test process ends in any way — panic=abort, `process::exit`, SIGINT,
//! SIGKILL — the kernel closes the pipe, `read` sees end of file, and the watchdog kills
//! every group it was told about. A clean `Drop` stops the children itself and tells the
//! watchdog `done`. After killing, the watchdog also removes the cluster's directory
//! (unless `KERF_KEEP_CLUSTER=1`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// One running component.
pub(crate) struct Proc {
    pub(crate) name: &'static str,
    pub(crate) bin: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) log: PathBuf,
    pub(crate) child: Child,
}

impl Proc {
    /// Starts `bin args` in a new process group, stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        name: &'static str,
        bin: PathBuf,
        args: Vec<String>,
        log: PathBuf,
    ) -> io::Result<Proc> {
        let child = spawn_child(&bin, &args, &log)?;
        Ok(Proc {
            name,
            bin,
            args,
            log,
            child,
        })
    }

    /// Starts the same command again (after [`Proc::stop`] or [`Proc::kill`]).
    pub(crate) fn respawn(&mut self) -> io::Result<()> {
        self.child = spawn_child(&self.bin, &self.args, &self.log)?;
        Ok(())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` when the process has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited with {status}")),
            Ok(None) => None,
            Err(e) => Some(format!("could not be waited for: {e}")),
        }
    }

    /// SIGKILL to the process group, then reap.
    pub(crate) fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM to the process group; SIGKILL if it is still running after `grace`.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// The last lines of the component's log.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

fn spawn_child(bin: &Path, args: &[String], log: &Path) -> io::Result<Child> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("KUBECONFIG")
        .process_group(0)
        .spawn()
}

/// The last `lines` lines of a file (at most its last 64 KiB), or why it could not be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let all: Vec<&str> = text.lines().collect();
        Ok(all[all.len().saturating_sub(lines)..].join("\n"))
    };
    read().unwrap_or_else(|e| format!("(could not read {}: {e})", path.display()))
}

const WATCHDOG: &str = r#"
pids=' '
while read -r l; do
  case $l in
    done) exit 0 ;;
    +*) pids="$pids${l#+} " ;;
    -*) pids=$(printf '%s' "$pids" | sed "s/ ${l#-} / /") ;;
  esac
done
for p in $pids; do kill -TERM -$p 2>/dev/null; done
sleep 2
for p in $pids; do kill -KILL -$p 2>/dev/null; done
if [ -n "$1" ]; then rm -rf -- "$1"; fi
"#;

/// Kills the registered process groups if this process dies without disarming it.
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// `remove`: a directory to delete after killing the groups (the cluster's, unless
    /// it is to be kept).
    pub(crate) fn spawn(remove: Option<&Path>) -> io::Result<Watchdog> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("kerf-testcluster-watchdog")
            .arg(remove.map(Path::as_os_str).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// Kill process group `pid` if this process dies.
    pub(crate) fn watch(&mut self, pid: u32) {
        self.send(&format!("+{pid}"));
    }

    /// Forget process group `pid` (it was stopped and reaped; its id may be reused).
    pub(crate) fn unwatch(&mut self, pid: u32) {
        self.send(&format!("-{pid}"));
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// Everything was stopped in order: let the watchdog exit without killing anything.
    pub(crate) fn disarm(&mut self) {
        self.send("done");
        self.stdin = None;
        let _ = self.child.wait();
    }
}
