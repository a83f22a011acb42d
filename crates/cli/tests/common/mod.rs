//! Shared harness for tests that start real `weft` processes and real FUSE mounts.
//! Every guard cleans up on drop, also when the test fails: mounts are unmounted
//! (lazily if busy) and processes killed.

#![allow(dead_code)]

pub mod pool;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `weft` binary under test. The process gets SIGTERM if the test dies without
/// cleaning up (a mount then unmounts itself), so nothing outlives a killed test.
pub fn weft() -> Command {
    weft_dying_with(libc::SIGTERM)
}

/// The `weft` binary, sent `sig` when the test thread that started it ends.
pub fn weft_dying_with(sig: i32) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, sig);
            Ok(())
        });
    }
    c
}

/// Runs `weft ARGS` to completion.
pub fn weft_output(args: &[&str]) -> Output {
    weft()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run weft")
}

/// True when `p` is a mountpoint.
pub fn is_mounted(p: &Path) -> bool {
    let Ok(c) = p.canonicalize() else {
        return false;
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = c.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A temporary directory under /tmp that other users can traverse (for the EACCES tests).
pub fn scratch(tag: &str) -> tempfile::TempDir {
    // WEFT_TEST_KEEP=1 keeps it (bricks, logs) after the test, to look at a failure.
    let keep = std::env::var_os("WEFT_TEST_KEEP").is_some_and(|v| v == "1");
    let d = tempfile::Builder::new()
        .prefix(&format!("weft-{tag}-"))
        .disable_cleanup(keep)
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

/// A one-brick volume: a brick directory, a volfile, a mountpoint.
pub struct Volume {
    /// Holds everything; removed on drop (after the mount is gone).
    pub dir: tempfile::TempDir,
    /// The brick directory.
    pub brick: PathBuf,
    /// The mountpoint.
    pub mnt: PathBuf,
    /// The client volfile.
    pub volfile: PathBuf,
}

impl Volume {
    /// A fresh volume of posix under io-stats (and trace when `trace`).
    pub fn new(tag: &str) -> Volume {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&brick).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        let volfile = dir.path().join("client.vol");
        std::fs::write(
            &volfile,
            format!(
                "volume {tag}-posix\n    type storage/posix\n    option directory {}\nend-volume\n\nvolume {tag}\n    type debug/io-stats\n    subvolumes {tag}-posix\nend-volume\n",
                brick.display()
            ),
        )
        .unwrap();
        Volume {
            dir,
            brick,
            mnt,
            volfile,
        }
    }

    /// A fresh volume of posix under a `features/python` translator (module `module`,
    /// class `class`, from folder `path`, with `option config` when non-empty) under io-stats.
    pub fn python(tag: &str, path: &Path, module: &str, class: &str, config: &str) -> Volume {
        let vol = Volume::new(tag);
        let config = if config.is_empty() {
            String::new()
        } else {
            format!("    option config {config}\n")
        };
        std::fs::write(
            &vol.volfile,
            format!(
                "volume {tag}-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
                 volume {tag}-py\n    type features/python\n    option module {module}\n    option path {}\n    option class {class}\n{config}    subvolumes {tag}-posix\nend-volume\n\n\
                 volume {tag}\n    type debug/io-stats\n    subvolumes {tag}-py\nend-volume\n",
                vol.brick.display(),
                path.display()
            ),
        )
        .unwrap();
        vol
    }

    /// Mounts it with `weft mount --foreground` and waits until the kernel shows it.
    pub fn mount(&self) -> MountGuard {
        self.mount_with(&[])
    }

    /// Mounts with extra `weft mount` arguments.
    pub fn mount_with(&self, extra: &[&str]) -> MountGuard {
        self.mount_with_env(extra, &[])
    }

    /// Mounts with extra `weft mount` arguments and environment variables.
    pub fn mount_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> MountGuard {
        let log = self.dir.path().join("mount.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = weft()
            .envs(env.iter().copied())
            .args(["mount", "--foreground", "--volfile"])
            .arg(&self.volfile)
            .arg(&self.mnt)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawn weft mount");
        let mut g = MountGuard {
            child: Some(child),
            mnt: self.mnt.clone(),
            log,
        };
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(st) = g.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weft mount exited early ({st}):\n{}", g.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mount did not appear:\n{}",
                g.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        g
    }
}

/// A running `weft mount` process; unmounts and kills on drop.
pub struct MountGuard {
    child: Option<Child>,
    /// The mountpoint.
    pub mnt: PathBuf,
    log: PathBuf,
}

impl MountGuard {
    /// The mount process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mount process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `sig` and waits for the process to exit; returns its exit status.
    pub fn stop_with(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, sig) };
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = c.kill();
                return c.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// Mounts `volfile` at `mnt` with `weft mount --foreground`, logging to `log`, and waits
/// until the kernel shows it.
pub fn mount_volfile(volfile: &Path, mnt: &Path, log: &Path, extra: &[&str]) -> MountGuard {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["--volfile".as_ref(), volfile.as_os_str(), mnt.as_os_str()];
    args.extend(extra.iter().map(|e| std::ffi::OsStr::new(*e)));
    mount_args(&args, mnt, log)
}

/// The text of a server volfile graph for one brick: posix under locks under
/// protocol/server, with extra `option` lines for protocol/server.
pub fn brick_graph(name: &str, dir: &Path, server_options: &[(&str, &str)]) -> String {
    let opts: String = server_options
        .iter()
        .map(|(k, v)| format!("    option {k} {v}\n"))
        .collect();
    format!(
        "volume {name}-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
         volume {name}\n    type features/locks\n    subvolumes {name}-posix\nend-volume\n\n\
         volume {name}-server\n    type protocol/server\n{opts}    subvolumes {name}\nend-volume\n\n",
        dir.display()
    )
}

/// A brick graph with cache invalidation, as volgen makes it: posix < locks <
/// features/upcall (the brick, named `name`) < protocol/server.
pub fn caching_brick_graph(name: &str, dir: &Path) -> String {
    format!(
        "volume {name}-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
         volume {name}-locks\n    type features/locks\n    subvolumes {name}-posix\nend-volume\n\n\
         volume {name}\n    type features/upcall\n    option cache-invalidation on\n    subvolumes {name}-locks\nend-volume\n\n\
         volume {name}-server\n    type protocol/server\n    subvolumes {name}\nend-volume\n\n",
        dir.display()
    )
}

/// A caching client volfile for brick `brick` at 127.0.0.1:`port`: protocol/client asking
/// for upcalls < entry-behind < (write-behind <) read-ahead < quick-read with open-behind (60 s) < md-cache (60 s,
/// cache invalidation on), as volgen makes it.
pub fn caching_client_volfile(brick: &str, port: u16, write_behind: bool) -> String {
    let mut v = client_volfile(brick, port, &[("cache-invalidation", "on")]);
    v.push_str(&format!(
        "\nvolume {brick}-entry-behind\n    type performance/entry-behind\n    subvolumes {brick}-client\nend-volume\n"
    ));
    let mut below = format!("{brick}-entry-behind");
    if write_behind {
        v.push_str(&format!(
            "\nvolume {brick}-wb\n    type performance/write-behind\n    subvolumes {below}\nend-volume\n"
        ));
        below = format!("{brick}-wb");
    }
    v.push_str(&format!(
        "\nvolume {brick}-read-ahead\n    type performance/read-ahead\n    subvolumes {below}\nend-volume\n"
    ));
    below = format!("{brick}-read-ahead");
    v.push_str(&format!(
        "\nvolume {brick}-quick-read\n    type performance/quick-read\n    option cache-timeout 60\n    subvolumes {below}\nend-volume\n\n\
         volume {brick}-md-cache\n    type performance/md-cache\n    option cache-invalidation on\n    option md-cache-timeout 60\n    subvolumes {brick}-quick-read\nend-volume\n"
    ));
    v
}

/// Three brick servers in `dir`, each in its own folder (`s0`..`s2`) serving brick
/// directory `b0`..`b2`: `graph(i, brick)` gives server `i`'s brick name and volfile. Also
/// the client volfile text of a `protocol/client` (`<name>-client`) to each, with
/// `options`.
pub fn three_brick_servers_with(
    dir: &Path,
    graph: &dyn Fn(usize, &Path) -> (String, String),
    options: &[(&str, &str)],
) -> (Vec<Brickd>, Vec<PathBuf>, String) {
    let mut servers = Vec::new();
    let mut bricks = Vec::new();
    let mut client = String::new();
    for i in 0..3 {
        let b = dir.join(format!("b{i}"));
        std::fs::create_dir(&b).unwrap();
        let sd = dir.join(format!("s{i}"));
        std::fs::create_dir(&sd).unwrap();
        let vf = sd.join("brick.vol");
        let (name, text) = graph(i, &b);
        std::fs::write(&vf, text).unwrap();
        let s = Brickd::start(&sd, &vf, &[]);
        client.push_str(&client_volfile(&name, s.port, options));
        client.push('\n');
        servers.push(s);
        bricks.push(b);
    }
    (servers, bricks, client)
}

/// A client volfile reaching brick `brick` at 127.0.0.1:`port`, with extra options.
pub fn client_volfile(brick: &str, port: u16, extra: &[(&str, &str)]) -> String {
    let opts: String = extra
        .iter()
        .map(|(k, v)| format!("    option {k} {v}\n"))
        .collect();
    format!(
        "volume {brick}-client\n    type protocol/client\n    option remote-host 127.0.0.1\n    option remote-port {port}\n    option remote-subvolume {brick}\n{opts}end-volume\n"
    )
}

/// A running `weft brickd`; killed on drop.
pub struct Brickd {
    child: Option<Child>,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// Its control socket.
    pub control: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    volfile: PathBuf,
    extra: Vec<String>,
}

impl Brickd {
    /// Starts `weft brickd` on 127.0.0.1 (port 0: a free one) serving `volfile`, its
    /// control socket and log in `dir`.
    pub fn start(dir: &Path, volfile: &Path, extra: &[&str]) -> Brickd {
        let mut b = Brickd {
            child: None,
            port: 0,
            control: dir.join("brickd.sock"),
            log: dir.join("brickd.log"),
            volfile: volfile.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        use std::io::BufRead;
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = weft_dying_with(libc::SIGKILL)
            .arg("brickd")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--control")
            .arg(&self.control)
            .arg("--volfile")
            .arg(&self.volfile)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .expect("spawn weft brickd");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert!(
            line.contains("listening on"),
            "brickd did not start: {line:?}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap()
            .trim_end_matches(',');
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        self.child = Some(child);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILLs it and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `weft brickd SUBCOMMAND --control <its socket> ARGS`.
    pub fn ctl(&self, sub: &str, args: &[&str]) -> Output {
        weft()
            .arg("brickd")
            .arg(sub)
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run weft brickd ctl")
    }
}

impl Drop for Brickd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The folder of the example Python translators (`examples/python`).
pub fn python_examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python")
}

/// The value of xattr `name` of `p`, or the errno.
pub fn getxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the length given.
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// The errno of an `io::Result`'s error, 0 on success.
pub fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Runs every posix-suite scenario on a local scratch directory and on `mnt`, and fails
/// with every problem (and the mount's log) unless both pass the absolute checks, give
/// the same outcomes, and the mount is still alive after each scenario (a dead mount
/// stops the run: later scenarios would compare a bare directory with a bare directory).
pub fn assert_behaves_like_local(mnt: &Path, m: &MountGuard) {
    let local = scratch("posix-local");
    let mut failures = Vec::new();
    for (name, _) in weft_posix_suite::SCENARIOS {
        let expected = weft_posix_suite::run_one(local.path(), name).expect("scenario exists");
        let run = || weft_posix_suite::run_one(mnt, name).expect("scenario exists");
        failures.extend(compare_scenario(name, &expected, run, &[m]));
        if m.alive().is_err() {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}\n--- mount log ---\n{}",
        failures.len(),
        failures.join("\n"),
        m.log_text()
    );
}

/// Starts a python3 process that takes an exclusive fcntl lock on `file`, and returns once
/// it holds it. The process lets go (and exits) when its stdin is closed.
pub fn hold_lock(file: &Path) -> Child {
    use std::io::BufRead;
    let script = "import fcntl, sys\nf = open(sys.argv[1], 'r+')\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.readline()\n";
    let mut holder = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "held", "the lock holder did not get its lock");
    holder
}

impl MountGuard {
    /// Whether the mount process still runs (not exited, not a zombie) and the kernel
    /// still shows the mount; `Err` says what is wrong.
    pub fn alive(&self) -> Result<(), String> {
        let Some(c) = self.child.as_ref() else {
            return Err(format!(
                "{}: the mount process was stopped",
                self.mnt.display()
            ));
        };
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap_or_default();
        // The state is the first field after the parenthesised command name.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if matches!(state, None | Some("Z") | Some("X")) {
            return Err(format!(
                "{}: the mount process {} is gone (state {state:?})",
                self.mnt.display(),
                c.id()
            ));
        }
        if !is_mounted(&self.mnt) {
            return Err(format!("{} is no longer mounted", self.mnt.display()));
        }
        Ok(())
    }
}

/// Runs `run` (one scenario on the filesystem under test) and compares its transcript
/// with `expected` (the same scenario on a local directory): both must pass the
/// absolute checks ([`weft_posix_suite::check`]), the diff must be empty, and every
/// mount in `mounts` must still be alive afterwards. Returns the problems, each
/// prefixed with the scenario name.
pub fn compare_scenario(
    name: &str,
    expected: &[weft_posix_suite::Step],
    run: impl FnOnce() -> Vec<weft_posix_suite::Step>,
    mounts: &[&MountGuard],
) -> Vec<String> {
    let mut out = Vec::new();
    for p in weft_posix_suite::check(name, expected) {
        out.push(format!("{name}: local directory: {p}"));
    }
    let actual = run();
    for p in weft_posix_suite::check(name, &actual) {
        out.push(format!("{name}: absolute: {p}"));
    }
    for d in weft_posix_suite::diff(expected, &actual) {
        out.push(format!("{name}: {d}"));
    }
    for m in mounts {
        if let Err(e) = m.alive() {
            out.push(format!("{name}: after the scenario: {e}"));
        }
    }
    out
}

/// One brick served by a `weft brickd` (posix < locks < protocol/server, see
/// [`brick_graph`]) and two `weft mount` processes of it, `a` and `b`, both with
/// attribute and entry timeouts of 0: the kernel asks Weft on every lookup and stat, so
/// what one mount reads right after the other wrote is Weft's answer, never a cache's.
pub struct TwoMounts {
    /// Mount A (declared first: unmounted before the server and the directory go).
    pub a: MountGuard,
    /// Mount B.
    pub b: MountGuard,
    /// The brick server.
    pub brickd: Brickd,
    /// Holds the brick, volfiles, mountpoints and logs.
    pub dir: tempfile::TempDir,
}

impl TwoMounts {
    /// Starts the brick server and mounts the brick twice, `client_opts` in both client
    /// volfiles, `mount_args` added to both `weft mount` command lines.
    pub fn new(tag: &str, client_opts: &[(&str, &str)], mount_args: &[&str]) -> TwoMounts {
        Self::start(tag, client_opts, mount_args, true)
    }

    /// Like [`TwoMounts::new`], but the mounts keep Weft's default attribute and entry
    /// timeouts (1 s), as applications get them: for what must hold whatever the caches
    /// (data written under a lock seen by the next holder).
    pub fn default_caches(tag: &str) -> TwoMounts {
        Self::start(tag, &[], &[], false)
    }

    /// Like [`TwoMounts::default_caches`], but with the caches on as `weft volume create`
    /// makes them: the brick has features/upcall with cache invalidation, each client
    /// graph performance/md-cache over performance/quick-read (both 60 s) over a
    /// protocol/client that asks for upcalls, and
    /// the kernel timeouts follow md-cache (60 s). Coherence then rests on the
    /// invalidations alone. With `write_behind`, write-behind sits under md-cache, as in
    /// a generated graph: a write then reaches the brick (and other mounts) at the
    /// latest when its file is closed or fsync'd.
    pub fn caching(tag: &str, write_behind: bool) -> TwoMounts {
        Self::start_with(tag, &[], &[], false, Some(write_behind))
    }

    fn start(
        tag: &str,
        client_opts: &[(&str, &str)],
        mount_args: &[&str],
        zero_timeouts: bool,
    ) -> TwoMounts {
        Self::start_with(tag, client_opts, mount_args, zero_timeouts, None)
    }

    fn start_with(
        tag: &str,
        client_opts: &[(&str, &str)],
        mount_args: &[&str],
        zero_timeouts: bool,
        caching: Option<bool>,
    ) -> TwoMounts {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        let sv = dir.path().join("server.vol");
        let graph = if caching.is_some() {
            caching_brick_graph("two", &brick)
        } else {
            brick_graph("two", &brick, &[])
        };
        std::fs::write(&sv, graph).unwrap();
        let brickd = Brickd::start(dir.path(), &sv, &[]);
        let mut args = Vec::new();
        if zero_timeouts {
            args.extend(["--attr-timeout", "0", "--entry-timeout", "0"]);
        }
        args.extend_from_slice(mount_args);
        let mount = |side: &str| {
            let vf = dir.path().join(format!("{side}.vol"));
            let text = if let Some(wb) = caching {
                caching_client_volfile("two", brickd.port, wb)
            } else {
                client_volfile("two", brickd.port, client_opts)
            };
            std::fs::write(&vf, text).unwrap();
            let mnt = dir.path().join(format!("mnt-{side}"));
            std::fs::create_dir(&mnt).unwrap();
            mount_volfile(&vf, &mnt, &dir.path().join(format!("{side}.log")), &args)
        };
        let (a, b) = (mount("a"), mount("b"));
        TwoMounts { a, b, brickd, dir }
    }

    /// Both mounts' and the brick server's logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- mount A log ---\n{}\n--- mount B log ---\n{}\n--- brickd log ---\n{}",
            self.a.log_text(),
            self.b.log_text(),
            self.brickd.log_text()
        )
    }

    /// Runs posix-suite scenario `name` (from `SCENARIOS` or `MULTI`) on a local directory
    /// and spread over the two mounts, and returns the problems [`compare_scenario`] finds.
    pub fn compare(&self, local: &Path, name: &str) -> Vec<String> {
        let (a, b) = (self.a.mnt.as_path(), self.b.mnt.as_path());
        let multi = weft_posix_suite::MULTI.iter().any(|(n, _)| *n == name);
        let (expected, run): (_, Box<dyn FnOnce() -> _>) = if multi {
            (
                weft_posix_suite::run_multi(local, local, name).expect("scenario"),
                Box::new(move || weft_posix_suite::run_multi(a, b, name).expect("scenario")),
            )
        } else {
            (
                weft_posix_suite::run_one(local, name).expect("scenario"),
                Box::new(move || weft_posix_suite::run_one_two(a, b, name).expect("scenario")),
            )
        };
        compare_scenario(name, &expected, run, &[&self.a, &self.b])
    }
}

/// One brick served by a `weft brickd` (posix < locks < protocol/server, see
/// [`brick_graph`]) and `n` `weft mount` processes of it with default caches, each client
/// graph topped by performance/write-behind when asked. Mounts go before the server, the
/// server before the directory.
pub struct NetVolume {
    /// The mounts, in order: (mountpoint, guard).
    pub mounts: Vec<(PathBuf, MountGuard)>,
    /// The brick server.
    pub brickd: Brickd,
    /// The brick directory.
    pub brick: PathBuf,
    /// Holds the brick, volfiles, mountpoints and logs.
    pub dir: tempfile::TempDir,
}

impl NetVolume {
    /// Starts the server and mounts the brick `n` times.
    pub fn new(tag: &str, n: usize, write_behind: bool) -> NetVolume {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        let sv = dir.path().join("server.vol");
        std::fs::write(&sv, brick_graph("nv", &brick, &[])).unwrap();
        let brickd = Brickd::start(dir.path(), &sv, &[]);
        let mut client = client_volfile("nv", brickd.port, &[]);
        if write_behind {
            client.push_str(
                "\nvolume nv-wb\n    type performance/write-behind\n    subvolumes nv-client\nend-volume\n",
            );
        }
        let cvf = dir.path().join("client.vol");
        std::fs::write(&cvf, client).unwrap();
        let mounts = (0..n)
            .map(|i| {
                let mnt = dir.path().join(format!("m{i}"));
                std::fs::create_dir(&mnt).unwrap();
                let g = mount_volfile(&cvf, &mnt, &dir.path().join(format!("m{i}.log")), &[]);
                (mnt, g)
            })
            .collect();
        NetVolume {
            mounts,
            brickd,
            brick,
            dir,
        }
    }

    /// Mountpoint `i`.
    pub fn mnt(&self, i: usize) -> &Path {
        &self.mounts[i].0
    }
}

/// Runs `script` with `/usr/bin/python3 -c` and `args`; asserts it succeeded and returns
/// its stdout, trimmed.
pub fn python_ok(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The handle path `.weft/handles/AB/CD/<gfid>` on `brick` of the file `on_brick` (read
/// from its gfid xattr).
pub fn handle_path(brick: &Path, on_brick: &Path) -> PathBuf {
    let g = getxattr(on_brick, "trusted.weft.gfid").expect("a gfid xattr");
    handle_of_gfid(brick, &g)
}

/// The handle path `.weft/handles/AB/CD/<gfid>` on `brick` of the raw 16-byte gfid `g`.
pub fn handle_of_gfid(brick: &Path, g: &[u8]) -> PathBuf {
    let hex: String = g.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    brick
        .join(".weft/handles")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(text)
}

/// Waits up to 5 s for `needle` to appear in the text `log` returns (a process logs an
/// event a moment after the effect a test saw), and says whether it did.
pub fn log_shows(log: impl Fn() -> String, needle: &str) -> bool {
    let t = Instant::now();
    while !log().contains(needle) {
        if t.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs `weft mount --foreground ARGS` (a volume by name, or any other form), logging to
/// `log`, and waits until the kernel shows `mnt` mounted.
pub fn mount_args(args: &[&std::ffi::OsStr], mnt: &Path, log: &Path) -> MountGuard {
    let logf = std::fs::File::create(log).unwrap();
    let child = weft()
        .args(["mount", "--foreground"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("spawn weft mount");
    let mut g = MountGuard {
        child: Some(child),
        mnt: mnt.to_path_buf(),
        log: log.to_path_buf(),
    };
    let start = Instant::now();
    while !is_mounted(mnt) {
        if let Some(st) = g.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("weft mount exited early ({st}):\n{}", g.log_text());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "mount did not appear:\n{}",
            g.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    g
}

/// Waits until every change a caching mount made behind (`performance/entry-behind`,
/// in directories it holds a lease on) before now is on the bricks, so a test may read
/// the bricks directly: an fsync of `dir` (a directory of the mount) waits for them.
/// File data written behind is not covered: fsync the file for that.
pub fn settle_behind(dir: &Path) {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("fsync of {}: {e}", dir.display()));
}

/// A client volume from volfile text, every translator type registered (the generic ones,
/// protocol/client and the cluster family); panics when it cannot be opened.
pub async fn open_volume(volfile: &str) -> weft_client::Volume {
    let mut reg = weft_xlators::registry();
    weft_protocol::register(&mut reg);
    weft_cluster::register(&mut reg);
    weft_client::Volume::from_volfile(volfile, reg, weft_client::OpenOptions::default())
        .await
        .unwrap_or_else(|e| panic!("open the volume: {e}"))
}

/// How many `fop` calls a `debug/io-stats` statedump (`Xlator::dump`) counts (0 when it
/// lists none).
pub fn fop_calls(dump: &str, fop: &str) -> u64 {
    dump.lines()
        .find(|l| l.split_whitespace().next() == Some(fop))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The replication changelogs of `p` on a brick (`getfattr -d -m trusted.weft.afr -e hex`)
/// when any counter in them is not zero; `None` when all are.
pub fn raised_changelogs(p: &Path) -> Option<String> {
    let o = Command::new("getfattr")
        .args(["-d", "-m", "trusted.weft.afr", "-e", "hex"])
        .arg(p)
        .output()
        .expect("run getfattr");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let raised = text
        .lines()
        .filter(|l| l.starts_with("trusted.weft.afr"))
        .any(|l| {
            l.split('=')
                .nth(1)
                .is_some_and(|v| v.trim_start_matches("0x").chars().any(|c| c != '0'))
        });
    raised.then_some(text)
}
