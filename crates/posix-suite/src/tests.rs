//! Self-tests: the suite must agree with itself on two local directories and
//! produce the outcomes the kernel's local filesystems are known to give.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("weft-posix-suite-")
        .tempdir_in("/tmp")
        .expect("create tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tempdir");
    d
}

fn step(name: &str, outcome: &str) -> Step {
    Step {
        name: name.into(),
        outcome: outcome.into(),
        via: String::new(),
    }
}

#[test]
fn diff_names_changed_missing_and_extra_steps() {
    let a = vec![
        step("s.a", "ok"),
        step("s.b", "err:ENOENT"),
        step("s.c", "ok"),
    ];
    let b = vec![step("s.a", "ok"), step("s.b", "ok"), step("s.d", "ok")];
    let d = diff(&a, &b);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert!(d[0].contains("s.b") && d[0].contains("err:ENOENT"));
    assert!(d[1].contains("s.c") && d[1].contains("missing"));
    assert!(d[2].contains("s.d") && d[2].contains("extra"));
    assert!(diff(&a, &a).is_empty());
}

#[test]
fn transcript_prefixes_and_dedups_names() {
    let mut t = Transcript::new();
    t.set_scope("x");
    t.record("a", "ok");
    t.record("a", "ok");
    t.res("b", &Err::<(), _>(nix::errno::Errno::EWOULDBLOCK));
    let names: Vec<_> = t.steps().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["x.a", "x.a#2", "x.b"]);
    assert_eq!(t.steps()[2].outcome, "err:EAGAIN");
    assert!(run_one(Path::new("/nonexistent"), "no_such_scenario").is_none());
}

#[test]
fn child_failures_are_recorded_without_paths() {
    let out = crate::child::run_py(
        "step('first', lambda: 'v')\nraise ValueError('/tmp/some/path')",
        &[],
        None,
    );
    assert_eq!(out.lines, [("first".to_string(), "ok:v".to_string())]);
    assert_eq!(out.failure.as_deref(), Some("exit:Some(1):ValueError"));
}

/// Problems [`check`] finds in a whole-suite transcript, scenario by scenario.
fn check_transcript(steps: &[Step]) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, _) in SCENARIOS {
        let own: Vec<Step> = steps
            .iter()
            .filter(|s| s.name.starts_with(&format!("{name}.")))
            .cloned()
            .collect();
        bad.extend(check(name, &own));
    }
    for s in steps {
        if !SCENARIOS
            .iter()
            .any(|(n, _)| s.name.starts_with(&format!("{n}.")))
        {
            bad.push(format!("step of no scenario: {}", s.name));
        }
    }
    bad
}

#[test]
fn local_runs_agree_and_match_known_outcomes() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "the POSIX suite self-test must run as root"
    );
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    let ta = run_all(a.path());
    let tb = run_all(b.path());
    let d = diff(&ta, &tb);
    assert!(d.is_empty(), "two local runs differ:\n{}", d.join("\n"));
    let bad = check_transcript(&ta);
    assert!(bad.is_empty(), "unexpected outcomes:\n{}", bad.join("\n"));

    // Scenarios run one by one (as the FUSE integration test may) produce
    // the same transcript as run_all.
    let mut tc = Vec::new();
    for (name, _) in SCENARIOS {
        tc.extend(run_one(c.path(), name).expect("known scenario"));
    }
    assert_eq!(ta, tc);

    // diff notices a changed outcome.
    let mut altered = ta.clone();
    altered[3].outcome = "err:EIO".into();
    let d = diff(&ta, &altered);
    assert_eq!(d.len(), 1);
    assert!(d[0].starts_with(&ta[3].name), "{d:?}");
}

#[test]
fn two_sides_over_one_directory_agree_with_one_side() {
    // B is A through a symlink: every step's path is rewritten, the files are the same.
    let (a, c) = (tempdir(), tempdir());
    let b = c.path().join("b");
    std::os::unix::fs::symlink(a.path(), &b).unwrap();
    let local = tempdir();
    for name in [
        "rename",
        "hardlinks",
        "xattrs",
        "ctime",
        "fcntl_locks",
        "mkdir_rmdir",
    ] {
        let want = run_one(local.path(), name).unwrap();
        let got = run_one_two(a.path(), &b, name).unwrap();
        let d = diff(&want, &got);
        assert!(d.is_empty(), "{name}: {}", d.join("\n"));
        assert!(check(name, &got).is_empty(), "{:?}", check(name, &got));
        // Steps alternate between the sides, and the side letters are recorded.
        let vias: String = got.iter().map(|s| s.via.as_str()).collect();
        assert!(vias.contains("AB") && vias.contains("BA"), "{name}: {vias}");
    }
    // Outside with_sides nothing is rewritten or recorded.
    assert!(run_one(c.path(), "chmod")
        .unwrap()
        .iter()
        .all(|s| s.via.is_empty()));
}

#[test]
fn multi_client_scenarios_pass_on_one_local_directory() {
    let d = tempdir();
    for (name, _) in MULTI {
        let steps = run_multi(d.path(), d.path(), name).unwrap();
        let bad = check(name, &steps);
        assert!(bad.is_empty(), "{name}:\n{}\n{steps:#?}", bad.join("\n"));
    }
    assert!(run_multi(d.path(), d.path(), "nope").is_none());
}

#[test]
fn check_refuses_what_a_diff_cannot_see() {
    let ok = |n: &str, o: &str| step(n, o);
    let base = vec![
        ok("x.setup", "ok"),
        ok("x.a", "ok"),
        ok("x.b", "ok"),
        ok("x.c", "ok"),
        ok("x.d", "ok"),
    ];
    assert!(check("x", &base).is_empty());
    for (bad_step, why) in [
        (ok("x.setup", "err:EIO"), "setup"),
        (ok("x.c1.run", "child_failed:spawn:NotFound"), "run"),
        (ok("x.e", "exc:KeyError"), "exc"),
        (ok("x.l", "ok:a:f:ino_mismatch"), "ino"),
        (ok("x.xl", "ok:names=[trusted.weft.gfid]"), "internal xattr"),
        (ok("y.a", "ok"), "other scenario"),
    ] {
        let mut s = base.clone();
        if bad_step.name == "x.setup" {
            s[0] = bad_step;
        } else {
            s.push(bad_step);
        }
        assert!(!check("x", &s).is_empty(), "{why} not refused");
    }
    assert!(!check("x", &base[..3]).is_empty(), "3 steps accepted");
    // A known outcome that differs is refused, on any filesystem.
    let mut x = run_one(tempdir().path(), "xattrs").unwrap();
    let i = x
        .iter()
        .position(|s| s.name == "xattrs.get_internal_gfid")
        .unwrap();
    x[i].outcome = "ok:data=leak".into();
    assert!(!check("xattrs", &x).is_empty());
}
