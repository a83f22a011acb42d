//! Runs small python3 programs as separate processes (optionally as another
//! user) and parses their `name=outcome` output lines.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a child may run before it is killed and reported as timed out.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Python helpers prepended to every child script: `en(e)` gives a canonical
/// errno name and `step(name, fn)` prints `name=ok[:value]` or `name=err:E...`.
const PRELUDE: &str = r#"
import os, sys, errno, fcntl, struct
ALIASES = {'EWOULDBLOCK': 'EAGAIN', 'ENOTSUP': 'EOPNOTSUPP', 'EDEADLOCK': 'EDEADLK'}
def en(e):
    n = errno.errorcode.get(e.errno, 'errno%d' % e.errno)
    return ALIASES.get(n, n)
def step(name, fn):
    try:
        r = fn()
        out = 'ok' if r is None else 'ok:' + str(r)
    except OSError as e:
        out = 'err:' + en(e)
    except Exception as e:
        out = 'exc:' + type(e).__name__
    sys.stdout.write(name + '=' + out + '\n')
    sys.stdout.flush()
"#;

/// Path of a python3 interpreter usable by unprivileged users too
/// (a pyenv shim under /root would not be).
fn python() -> &'static str {
    ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("python3")
}

/// What a child printed, plus a failure description (spawn failure,
/// timeout, non-zero exit) if it did not finish cleanly.
pub(crate) struct ChildOutput {
    /// `(name, outcome)` pairs printed as `name=outcome` lines.
    pub lines: Vec<(String, String)>,
    /// Normalized failure (no paths), `None` on a clean exit.
    pub failure: Option<String>,
}

/// Runs `body` (after the prelude) with `args` as `sys.argv[1:]`, as
/// `user` = (uid, gid) when given, and collects its output.
///
/// In a two-client run (`crate::with_sides`) the child is one step: every path argument
/// goes to the next side.
pub(crate) fn run_py(body: &str, args: &[String], user: Option<(u32, u32)>) -> ChildOutput {
    let args = crate::sys::place_args(args);
    match spawn_py(body, &args, user) {
        Ok(out) => {
            let lines = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            let failure = (!out.status.success()).then(|| {
                // Keep only the exception type: messages contain paths.
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("");
                let kind = last.split(':').next().unwrap_or("");
                format!("exit:{:?}:{kind}", out.status.code())
            });
            ChildOutput { lines, failure }
        }
        Err(e) => ChildOutput {
            lines: Vec::new(),
            failure: Some(e),
        },
    }
}

fn spawn_py(
    body: &str,
    args: &[String],
    user: Option<(u32, u32)>,
) -> Result<std::process::Output, String> {
    let script = format!("{PRELUDE}\n{body}");
    let mut cmd = Command::new(python());
    cmd.arg("-I")
        .arg("-S")
        .arg("-c")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("spawn:{:?}", e.kind()))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(CHILD_TIMEOUT) {
        Ok(r) => r.map_err(|e| format!("wait:{:?}", e.kind()))?,
        Err(_) => {
            // The child is not reaped until the waiting thread returns, so
            // its pid cannot have been reused yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv();
            return Err("timeout".to_string());
        }
    };
    Ok(out)
}
