//! Runs small python3 programs as separate processes (optionally as another
//! user) and parses their `name=outcome` output lines.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

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

/// Runs `body` (after the prelude) with `args` as `sys.argv[1:]`, as
/// `user` = (uid, gid) when given, and returns the `(name, outcome)` pairs it
/// printed. Errors describe a spawn failure or non-zero exit.
pub(crate) fn run_py(
    body: &str,
    args: &[String],
    user: Option<(u32, u32)>,
) -> Result<Vec<(String, String)>, String> {
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
    let out = cmd.output().map_err(|e| format!("spawn:{:?}", e.kind()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("exit:{:?}:{last}", out.status.code()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect())
}
