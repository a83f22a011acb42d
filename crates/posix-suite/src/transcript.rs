//! Transcript recording: named steps with normalized outcome strings, and
//! comparison of two transcripts.

use nix::errno::Errno;
use serde::Serialize;
use std::collections::HashMap;

/// One observed outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Step name, `"<scenario>.<step>"`, unique within a transcript.
    pub name: String,
    /// Normalized outcome, e.g. `ok`, `ok:size=4096`, `err:ENOENT`.
    pub outcome: String,
    /// In a two-client run, the sides (`A`, `B`) of the calls the step made, in order;
    /// empty otherwise. Not compared by [`diff`], shown in its messages.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub via: String,
}

/// Ordered list of recorded steps plus the name of the scenario being run.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    steps: Vec<Step>,
    scope: String,
    seen: HashMap<String, usize>,
}

impl Transcript {
    /// Creates an empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the scenario name that prefixes subsequently recorded step names.
    pub fn set_scope(&mut self, scenario: &str) {
        self.scope = scenario.to_string();
    }

    /// Records `outcome` for `step`; the name is prefixed with the current
    /// scenario and made unique by appending `#N` on repetition.
    pub fn record(&mut self, step: &str, outcome: impl Into<String>) {
        let base = if self.scope.is_empty() {
            step.to_string()
        } else {
            format!("{}.{}", self.scope, step)
        };
        let n = self.seen.entry(base.clone()).or_insert(0);
        *n += 1;
        let name = if *n == 1 { base } else { format!("{base}#{n}") };
        self.steps.push(Step {
            name,
            outcome: outcome.into(),
            via: crate::sys::take_used(),
        });
    }

    /// Records `ok` or `err:<ERRNO>` for a syscall result.
    pub fn res<T>(&mut self, step: &str, r: &Result<T, Errno>) {
        self.record(step, outcome(r));
    }

    /// Records `ok:<f(value)>` (or `ok` if `f` returns an empty string) or
    /// `err:<ERRNO>`.
    pub fn res_with<T>(&mut self, step: &str, r: &Result<T, Errno>, f: impl FnOnce(&T) -> String) {
        self.record(step, outcome_with(r, f));
    }

    /// Recorded steps so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Consumes the transcript, returning its steps.
    pub fn into_steps(self) -> Vec<Step> {
        self.steps
    }
}

/// Canonical errno name (aliases such as `EWOULDBLOCK` map to `EAGAIN`).
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

/// `ok` or `err:<ERRNO>`.
pub fn outcome<T>(r: &Result<T, Errno>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err:{}", errno_name(*e)),
    }
}

/// `ok:<f(value)>` (plain `ok` when `f` yields an empty string) or `err:<ERRNO>`.
pub fn outcome_with<T>(r: &Result<T, Errno>, f: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => {
            let s = f(v);
            if s.is_empty() {
                "ok".to_string()
            } else {
                format!("ok:{s}")
            }
        }
        Err(e) => format!("err:{}", errno_name(*e)),
    }
}

/// Compares two transcripts by step name and returns human-readable
/// differences (empty when equal). Order of steps is not significant.
pub fn diff(expected: &[Step], actual: &[Step]) -> Vec<String> {
    let act: HashMap<&str, &str> = actual
        .iter()
        .map(|s| (s.name.as_str(), s.outcome.as_str()))
        .collect();
    let exp: HashMap<&str, &str> = expected
        .iter()
        .map(|s| (s.name.as_str(), s.outcome.as_str()))
        .collect();
    let mut out = Vec::new();
    for s in expected {
        match act.get(s.name.as_str()) {
            None => out.push(format!(
                "{}: expected `{}`, but the step is missing",
                s.name, s.outcome
            )),
            Some(a) if *a != s.outcome => {
                let via = actual
                    .iter()
                    .find(|x| x.name == s.name)
                    .filter(|x| !x.via.is_empty())
                    .map(|x| format!(" (via {})", x.via))
                    .unwrap_or_default();
                out.push(format!(
                    "{}: expected `{}`, got `{}`{via}",
                    s.name, s.outcome, a
                ))
            }
            Some(_) => {}
        }
    }
    for s in actual {
        if !exp.contains_key(s.name.as_str()) {
            out.push(format!(
                "{}: unexpected extra step with outcome `{}`",
                s.name, s.outcome
            ));
        }
    }
    out
}
