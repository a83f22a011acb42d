//! The POSIX suite with two clients. Every posix-suite scenario runs with its steps spread
//! over two mounts (A and B) of one network volume (posix < locks < protocol/server, two
//! `weft mount` processes): each path-taking call alternates between the mounts (a
//! rename's or link's two paths go to one mount; a descriptor stays on the mount that
//! opened it; a python child is one step on one mount), and the transcript is compared
//! with the same steps on one local directory. Then the scenarios that need two clients
//! to mean anything (`weft_posix_suite::MULTI`): coherence after each kind of change,
//! fcntl/OFD/flock lock handoff, appends from both sides, a locked read-modify-write.
//! Each transcript also passes the absolute checks, and both mounts must be alive after
//! each scenario.
//!
//! **The rule for caches.** Both mounts run with `--attr-timeout 0 --entry-timeout 0`:
//! the kernel keeps no attributes or names, so a step reading right after the other mount
//! wrote gets Weft's answer, never the kernel's documented 1 s staleness, and every
//! difference is Weft's (or a page cache Weft failed to drop). Steps that compare two of
//! their own results by `st_dev`, and FIFO I/O (a FIFO joins processes of one kernel
//! only, as on NFS), run on one side.
//!
//! The lock scenarios (handoff, locked counter) run a second time on mounts with the
//! default timeouts: what is written under a lock must reach the next holder whatever
//! the caches, and zero timeouts would hide a mount that keeps stale pages.
//!
//! **Known failures** are listed in [`KNOWN`]: the main test tolerates exactly those steps
//! and `known_failures_report` prints their outcome on every run, so they are never
//! silently skipped.

mod common;

use common::*;

/// Steps that fail today for a real reason, with the reason. The main test ignores only
/// these steps; `known_failures_report` runs their scenarios and prints what they give.
const KNOWN: &[(&str, &str)] = &[(
    "open_flags.append_interleaved",
    "an O_APPEND write through mount A after mount B extended the file leaves the \
     descriptor's offset at A's stale size + written (the kernel's FUSE direct-I/O path \
     places the offset from its cached i_size; the data itself lands at the real EOF)",
)];

/// The scenario of a problem line (`<scenario>: ...`) and whether it is about a step in
/// [`KNOWN`].
fn is_known(problem: &str) -> bool {
    KNOWN.iter().any(|(step, _)| {
        problem.contains(&format!(" {step}:")) || problem.contains(&format!(": {step}:"))
    })
}

/// Runs `names` on a fresh two-mount volume (timeouts 0); fails with every problem not
/// in [`KNOWN`].
fn run_group(tag: &str, names: &[&str]) {
    run_on(TwoMounts::new(tag, &[], &[]), tag, names)
}

/// Runs `names` on `two`; fails with every problem not in [`KNOWN`].
fn run_on(two: TwoMounts, tag: &str, names: &[&str]) {
    let local = scratch(&format!("{tag}-local"));
    let mut failures = Vec::new();
    for name in names {
        failures.extend(two.compare(local.path(), name));
        if two.a.alive().is_err() || two.b.alive().is_err() {
            break;
        }
    }
    let (known, failures): (Vec<String>, Vec<String>) =
        failures.into_iter().partition(|p| is_known(p));
    for k in &known {
        eprintln!("known failure (report-only): {k}");
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        two.logs()
    );
}

/// The scenario that `big_directory` runs on its own (10,000 entries take a minute with
/// no name cache).
const BIG: &str = "big_dir";

#[test]
fn every_scenario_spread_over_two_mounts_behaves_like_one_local_directory() {
    let names: Vec<&str> = weft_posix_suite::SCENARIOS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != BIG)
        .collect();
    run_group("tc-posix", &names);
}

#[test]
fn big_directory_spread_over_two_mounts() {
    run_group("tc-big", &[BIG]);
}

#[test]
fn two_client_scenarios_see_each_other_at_once() {
    let names: Vec<&str> = weft_posix_suite::MULTI.iter().map(|(n, _)| *n).collect();
    run_group("tc-multi", &names);
}

/// Every scenario, and every two-client scenario, spread over two mounts with md-cache on
/// and long timeouts (md-cache and the kernel 60 s): what one mount changed, the other
/// sees at its very next call, because the brick tells it (features/upcall) before the
/// change is answered. Without write-behind, as the other two-client tests: a write held
/// back by write-behind reaches the brick at close or fsync, by design (the random
/// workload in coherence.rs runs with it).
#[test]
fn every_scenario_spread_over_two_caching_mounts() {
    let mut names: Vec<&str> = weft_posix_suite::SCENARIOS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != BIG)
        .collect();
    names.extend(weft_posix_suite::MULTI.iter().map(|(n, _)| *n));
    run_on(
        TwoMounts::caching("tc-caching", false),
        "tc-caching",
        &names,
    );
}

/// Data written under a lock is seen by the next holder on the other mount whatever the
/// kernel caches: the lock scenarios again on mounts with the default 1 s timeouts
/// (with timeouts of 0 every read revalidates and would hide a mount that keeps stale
/// pages across a lock handoff).
#[test]
fn lock_scenarios_hold_with_the_default_caches() {
    let two = TwoMounts::default_caches("tc-cached");
    run_on(two, "tc-cached", &["mc_lock_handoff", "mc_locked_counter"]);
}

/// Report-only: runs the scenarios of [`KNOWN`] and prints, on every run, each known
/// step's outcome on the mounts beside the local one. Never fails on them (the mounts
/// must stay alive), so a fix shows here as `now passes`.
#[test]
fn known_failures_report() {
    let two = TwoMounts::new("tc-known", &[], &[]);
    let local = scratch("tc-known-local");
    let mut scenarios: Vec<&str> = KNOWN
        .iter()
        .map(|(s, _)| s.split('.').next().unwrap())
        .collect();
    scenarios.dedup();
    for name in scenarios {
        let problems = two.compare(local.path(), name);
        for (step, why) in KNOWN
            .iter()
            .filter(|(s, _)| s.starts_with(&format!("{name}.")))
        {
            let mine: Vec<&String> = problems
                .iter()
                .filter(|p| p.contains(&format!(" {step}:")) || p.contains(&format!(": {step}:")))
                .collect();
            if mine.is_empty() {
                println!("known failure {step}: now passes (remove it from KNOWN)");
            } else {
                println!("known failure {step} ({why}):");
                for p in mine {
                    println!("    {p}");
                }
            }
        }
        two.a.alive().unwrap();
        two.b.alive().unwrap();
    }
}
