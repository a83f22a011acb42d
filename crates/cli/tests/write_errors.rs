//! Write errors reach the writer: through write-behind, on a full brick and across brick
//! restarts, an acknowledged write is either on the brick or reported by the writer's
//! write, fsync or close, never silently lost; a reader in between takes nothing away.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A tmpfs of `size` mounted at `dir`; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        let on = mounted_at(dir);
        assert!(
            on.starts_with("tmpfs"),
            "no tmpfs at {}: {on:?}",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

/// What `findmnt` says is mounted at `dir` (empty when nothing is).
fn mounted_at(dir: &Path) -> String {
    Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SIZE,USED,OPTIONS", "--mountpoint"])
        .arg(dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const FULL_WRITER: &str = r#"
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
res = []
try:
    n = os.write(fd, b"d" * (2 << 20))
    res.append(f"write={n}")
except OSError as e:
    res.append(f"write=err{e.errno}")
print(" ".join(res), flush=True)
sys.stdin.readline()  # a reader runs now
try:
    os.fsync(fd)
    res.append("fsync=ok")
except OSError as e:
    res.append(f"fsync=err{e.errno}")
try:
    os.close(fd)
    res.append("close=ok")
except OSError as e:
    res.append(f"close=err{e.errno}")
print(" ".join(res), flush=True)
"#;

/// A 2 MiB write to a brick with 1 MiB free: the writer learns of it (short or failed
/// write, or fsync/close error) even though another process read and closed the file in
/// between; with write-behind on.
#[test]
fn a_full_brick_is_reported_to_the_writer_not_to_a_reader() {
    let dir = scratch("enospc");
    let fs = Tmpfs::new(&dir.path().join("small"), "1m");
    let brick = fs.0.join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("client.vol");
    std::fs::write(
        &vf,
        format!(
            "volume s-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
             volume s-locks\n    type features/locks\n    subvolumes s-posix\nend-volume\n\n\
             volume s\n    type performance/write-behind\n    subvolumes s-locks\nend-volume\n",
            brick.display()
        ),
    )
    .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_volfile(&vf, &mnt, &dir.path().join("m.log"), &[]);
    let file = mnt.join("big");
    let mut w = Command::new("/usr/bin/python3")
        .args(["-c", FULL_WRITER])
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(w.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // Another process reads the file and closes it.
    let cat = Command::new("cat").arg(&file).output().unwrap();
    assert!(cat.status.success());
    w.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut last = String::new();
    out.read_line(&mut last).unwrap();
    assert!(w.wait().unwrap().success());
    let on_brick = std::fs::metadata(brick.join("big"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        on_brick < 2 << 20,
        "the brick was not full: {on_brick} bytes; the writer said {last}; the brick's filesystem: {}\n{}",
        mounted_at(&fs.0),
        m.log_text()
    );
    let wrote_all = last.contains(&format!("write={}", 2 << 20));
    let reported = last.contains("fsync=err") || last.contains("close=err");
    assert!(
        !wrote_all || reported,
        "2 MiB acknowledged, {on_brick} bytes on the brick, and no error: {last}\n{}",
        m.log_text()
    );
    if wrote_all {
        assert!(
            last.contains("fsync=err28"),
            "fsync must say ENOSPC: {last}"
        );
    }
    drop(m);
}

const CHUNKED_WRITER: &str = r#"
import os, sys, time
p, chunks = sys.argv[1], int(sys.argv[2])
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
retried = 0
for i in range(chunks):
    data = bytes([(i * 7 + 1) % 251]) * (128 << 10)
    # As many applications do: a failed write is retried until it goes through.
    for attempt in range(100):
        try:
            n = os.pwrite(fd, data, i * (128 << 10))
            assert n == len(data), n
            break
        except OSError as e:
            retried += 1
            time.sleep(0.1)
    if i == chunks // 3:
        print("third", flush=True)
err = None
try:
    os.fsync(fd)
except OSError as e:
    err = f"fsync-err{e.errno}"
try:
    os.close(fd)
except OSError as e:
    err = err or f"close-err{e.errno}"
print(f"done {retried} {err}", flush=True)
"#;

/// Writes through write-behind while the brick server is SIGKILLed and restarted at
/// changing moments, many runs; the writer retries failed writes, as applications do.
/// Whenever its fsync and close said nothing, every byte it wrote is on the brick.
#[test]
fn a_brick_restart_never_leaves_a_silent_hole() {
    let dir = scratch("wbkill");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(&vf, brick_graph("wk", &brick, &[])).unwrap();
    let mut bd = Brickd::start(dir.path(), &vf, &[]);
    let mut client = client_volfile("wk", bd.port, &[("ping-timeout", "3")]);
    client.push_str(
        "\nvolume wk-wb\n    type performance/write-behind\n    subvolumes wk-client\nend-volume\n",
    );
    let cvf = dir.path().join("client.vol");
    std::fs::write(&cvf, client).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_volfile(&cvf, &mnt, &dir.path().join("m.log"), &[]);
    let chunks = 48usize;
    let (mut clean, mut reported, mut retried_clean) = (0, 0, 0u64);
    for run in 0..8u64 {
        let name = format!("f{run}");
        let mut w = Command::new("/usr/bin/python3")
            .args(["-c", CHUNKED_WRITER])
            .arg(mnt.join(&name))
            .arg(chunks.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(w.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // Kill at a moment that moves from run to run.
        std::thread::sleep(Duration::from_millis(run * 7 % 30));
        bd.restart();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(w.wait().unwrap().success());
        eprintln!("run {run}: {}", line.trim());
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.first(), Some(&"done"), "{line}");
        if parts.get(2) == Some(&"None") {
            retried_clean += parts
                .get(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            clean += 1;
            let data = std::fs::read(brick.join(&name)).unwrap();
            assert_eq!(data.len(), chunks * (128 << 10), "run {run}: size");
            for (i, c) in data.chunks(128 << 10).enumerate() {
                let want = ((i * 7 + 1) % 251) as u8;
                assert!(
                    c.iter().all(|&b| b == want),
                    "run {run}: chunk {i} is not what was written, and nobody was told\n{}",
                    m.log_text()
                );
            }
        } else {
            reported += 1;
        }
        // Let the mount reconnect before the next run.
        let t = std::time::Instant::now();
        while std::fs::metadata(mnt.join("f0")).is_err() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "{clean} runs whose fsync and close succeeded (checked byte by byte; {retried_clean} writes retried in them), {reported} with an fsync/close error"
    );
}
