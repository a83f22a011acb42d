//! Background tasks: long work a mgmtd runs for its own node (rebalance and self-heal of the
//! bricks it holds, later transfers and scrubs). One framework for all of them:
//!
//! - a task's record (kind, parameters, state, progress, checkpoint) lives in the local
//!   store and is written at every checkpoint, so a mgmtd that is killed resumes each
//!   running task from its last checkpoint when it starts again, not from zero;
//! - a task can be paused, resumed and stopped, and is throttled (items per second);
//! - it reports progress: items and bytes done, the total when known, the rate and an
//!   estimate of the time left.
//!
//! A kind of task is a [`Job`]: it is handed a [`TaskCtx`] and calls
//! [`TaskCtx::checkpoint`] after each unit of work with how far it got; that call also
//! applies pause, stop and the throttle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::LocalStore;

const PREFIX: &str = "task/";

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Working.
    Running,
    /// Waiting for `resume`.
    Paused,
    /// Stopped by a user before the end.
    Stopped,
    /// Done.
    Completed,
    /// Ended with an error.
    Failed,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Stopped | TaskState::Completed | TaskState::Failed
        )
    }
}

/// A task as stored and as the API shows it (the documented `--json` shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskRecord {
    /// Its id.
    pub id: String,
    /// What it does, e.g. "count", "rebalance".
    pub kind: String,
    /// The volume it works on, if any.
    pub volume: Option<String>,
    /// The node running it.
    pub node: String,
    /// Its kind's parameters.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Where it is.
    pub state: TaskState,
    /// Items done.
    pub items_done: u64,
    /// Items in all, when known.
    pub items_total: Option<u64>,
    /// Bytes done.
    pub bytes_done: u64,
    /// Items a second at most (0: no limit).
    pub throttle: u64,
    /// Items a second over the current run.
    pub rate: f64,
    /// Seconds left at that rate, when the total is known.
    pub eta_secs: Option<u64>,
    /// Seconds spent running, over every run.
    pub run_secs: u64,
    /// Times it was resumed after its mgmtd restarted.
    pub resumed: u32,
    /// Created, seconds since the epoch.
    pub created_at: u64,
    /// Last checkpoint, seconds since the epoch.
    pub updated_at: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The kind's own checkpoint.
    #[schema(value_type = Object)]
    pub checkpoint: serde_json::Value,
}

/// `POST /v1/tasks`: start a task.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StartTaskRequest {
    /// Its kind.
    pub kind: String,
    /// The volume, for kinds that work on one.
    #[serde(default)]
    pub volume: Option<String>,
    /// The kind's parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Items a second at most (0: no limit).
    #[serde(default)]
    pub throttle: u64,
}

/// `POST /v1/tasks/{id}/throttle`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ThrottleRequest {
    /// Items a second at most (0: no limit).
    pub items_per_sec: u64,
}

/// Why a task ends early: a user stopped it, or its mgmtd is going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupted {
    /// `task stop`.
    Stopped,
    /// mgmtd is shutting down; the task resumes at its next start.
    Shutdown,
}

/// A kind of task.
#[async_trait::async_trait]
pub trait Job: Send + Sync {
    /// Runs (or resumes, from `ctx.record().checkpoint`) until done, calling
    /// [`TaskCtx::checkpoint`] after each unit of work and returning at once with its
    /// error when that says to stop. An `Err(String)` fails the task.
    async fn run(&self, ctx: &TaskCtx) -> Result<(), JobEnd>;
}

/// How a job's run ended early.
#[derive(Debug)]
pub enum JobEnd {
    /// Pause/stop/shutdown said so.
    Interrupted(Interrupted),
    /// The job failed.
    Failed(String),
}

impl From<Interrupted> for JobEnd {
    fn from(i: Interrupted) -> JobEnd {
        JobEnd::Interrupted(i)
    }
}

struct Live {
    record: parking_lot::Mutex<TaskRecord>,
    control: tokio::sync::watch::Sender<TaskState>,
    run_started: parking_lot::Mutex<(Instant, u64, u64)>,
    last_item: parking_lot::Mutex<Instant>,
    last_save: parking_lot::Mutex<Instant>,
}

/// How often a running task's progress is written to the store: a mgmtd killed mid-task
/// redoes at most this much work when it resumes.
pub const SAVE_EVERY: Duration = Duration::from_millis(500);

/// A running task's handle on the framework.
pub struct TaskCtx {
    live: Arc<Live>,
    store: LocalStore,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn save(store: &LocalStore, r: &TaskRecord) {
    match serde_json::to_vec(r) {
        Ok(b) => {
            if let Err(e) = store.put(&format!("{PREFIX}{}", r.id), &b) {
                tracing::error!(task = %r.id, "cannot save the task's checkpoint: {e}");
            }
        }
        Err(e) => tracing::error!(task = %r.id, "cannot encode the task: {e}"),
    }
}

impl TaskCtx {
    /// A copy of the task's record (its params and its last checkpoint).
    pub fn record(&self) -> TaskRecord {
        self.live.record.lock().clone()
    }

    /// Sets the number of items in all, when the job learns it.
    pub fn set_total(&self, total: u64) {
        self.live.record.lock().items_total = Some(total);
    }

    /// Records progress (`items` and `bytes` more done, `checkpoint` to resume from),
    /// durably; then waits as the throttle says, waits while paused, and returns an error
    /// when the task is stopped or mgmtd is shutting down.
    pub async fn checkpoint(
        &self,
        items: u64,
        bytes: u64,
        checkpoint: serde_json::Value,
    ) -> Result<(), Interrupted> {
        let throttle = {
            let mut r = self.live.record.lock();
            r.items_done += items;
            r.bytes_done += bytes;
            r.checkpoint = checkpoint;
            r.updated_at = now();
            let (t0, base_secs, items0) = *self.live.run_started.lock();
            let el = t0.elapsed().as_secs_f64();
            r.run_secs = base_secs + el as u64;
            r.rate = if el > 0.0 {
                (r.items_done - items0) as f64 / el
            } else {
                0.0
            };
            r.eta_secs = match r.items_total {
                Some(t) if r.rate > 0.0 => {
                    Some((t.saturating_sub(r.items_done) as f64 / r.rate) as u64)
                }
                _ => None,
            };
            let mut last = self.live.last_save.lock();
            if last.elapsed() >= SAVE_EVERY {
                save(&self.store, &r);
                *last = Instant::now();
            }
            r.throttle
        };
        if throttle > 0 && items > 0 {
            let gap = Duration::from_secs_f64(items as f64 / throttle as f64);
            let next = *self.live.last_item.lock() + gap;
            tokio::time::sleep_until(next.into()).await;
            *self.live.last_item.lock() = Instant::now().max(next);
        }
        self.gate().await
    }

    async fn gate(&self) -> Result<(), Interrupted> {
        // Whatever stops the task here, its latest checkpoint is durable first.
        if *self.shutdown.borrow() || *self.live.control.borrow() != TaskState::Running {
            save(&self.store, &self.live.record.lock());
        }
        let mut ctl = self.live.control.subscribe();
        let mut down = self.shutdown.clone();
        loop {
            if *down.borrow() {
                return Err(Interrupted::Shutdown);
            }
            match *ctl.borrow_and_update() {
                TaskState::Stopped => return Err(Interrupted::Stopped),
                TaskState::Running => return Ok(()),
                _ => {}
            }
            tokio::select! {
                _ = ctl.changed() => {}
                _ = down.changed() => {}
            }
        }
    }
}

/// The task framework of one mgmtd.
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<TasksInner>,
}

struct TasksInner {
    store: LocalStore,
    node: String,
    kinds: BTreeMap<String, Arc<dyn Job>>,
    live: parking_lot::Mutex<BTreeMap<String, Arc<Live>>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// A task operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such task.
    #[error("task {0} does not exist")]
    NotFound(String),
    /// No such kind.
    #[error("there is no task kind {0:?} (known: {1})")]
    UnknownKind(String, String),
    /// Not possible in its state.
    #[error("task {0} is {1:?}; cannot {2}")]
    BadState(String, TaskState, &'static str),
}

impl Tasks {
    /// The framework for node `node` (its host name, shown in records) with these kinds.
    pub fn new(store: LocalStore, node: String, kinds: BTreeMap<String, Arc<dyn Job>>) -> Tasks {
        let (tx, _) = tokio::sync::watch::channel(false);
        Tasks {
            inner: Arc::new(TasksInner {
                store,
                node,
                kinds,
                live: parking_lot::Mutex::new(BTreeMap::new()),
                shutdown: tx,
            }),
        }
    }

    /// Resumes every task left running or paused by a previous run of mgmtd.
    pub fn resume_all(&self) {
        let Ok(rows) = self.inner.store.scan(PREFIX) else {
            return;
        };
        for (_, v) in rows {
            let Ok(mut r) = serde_json::from_slice::<TaskRecord>(&v) else {
                continue;
            };
            if r.state.is_final() {
                continue;
            }
            r.resumed += 1;
            tracing::info!(task = %r.id, kind = %r.kind, done = r.items_done, "resuming task from its checkpoint");
            self.launch(r);
        }
    }

    /// Starts a new task.
    pub fn start(&self, req: StartTaskRequest) -> Result<TaskRecord, TaskError> {
        if !self.inner.kinds.contains_key(&req.kind) {
            let known: Vec<&str> = self.inner.kinds.keys().map(String::as_str).collect();
            return Err(TaskError::UnknownKind(req.kind, known.join(", ")));
        }
        let t = now();
        let r = TaskRecord {
            id: uuid::Uuid::new_v4().to_string(),
            kind: req.kind,
            volume: req.volume,
            node: self.inner.node.clone(),
            params: req.params,
            state: TaskState::Running,
            items_done: 0,
            items_total: None,
            bytes_done: 0,
            throttle: req.throttle,
            rate: 0.0,
            eta_secs: None,
            run_secs: 0,
            resumed: 0,
            created_at: t,
            updated_at: t,
            error: None,
            checkpoint: serde_json::Value::Null,
        };
        save(&self.inner.store, &r);
        self.launch(r.clone());
        Ok(r)
    }

    fn launch(&self, r: TaskRecord) {
        let Some(job) = self.inner.kinds.get(&r.kind).cloned() else {
            tracing::error!(task = %r.id, "unknown task kind {}", r.kind);
            return;
        };
        let (ctl, _) = tokio::sync::watch::channel(r.state);
        let live = Arc::new(Live {
            run_started: parking_lot::Mutex::new((Instant::now(), r.run_secs, r.items_done)),
            last_item: parking_lot::Mutex::new(Instant::now()),
            last_save: parking_lot::Mutex::new(Instant::now()),
            record: parking_lot::Mutex::new(r.clone()),
            control: ctl,
        });
        self.inner.live.lock().insert(r.id.clone(), live.clone());
        let ctx = TaskCtx {
            live: live.clone(),
            store: self.inner.store.clone(),
            shutdown: self.inner.shutdown.subscribe(),
        };
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            // A paused task waits before doing anything.
            let end = match ctx.gate().await {
                Err(i) => Err(JobEnd::Interrupted(i)),
                Ok(()) => job.run(&ctx).await,
            };
            let mut rec = live.record.lock();
            match end {
                Ok(()) => rec.state = TaskState::Completed,
                Err(JobEnd::Interrupted(Interrupted::Stopped)) => rec.state = TaskState::Stopped,
                Err(JobEnd::Interrupted(Interrupted::Shutdown)) => {
                    save(&store, &rec);
                    return;
                }
                Err(JobEnd::Failed(e)) => {
                    rec.state = TaskState::Failed;
                    rec.error = Some(e);
                }
            }
            rec.updated_at = now();
            rec.eta_secs = None;
            save(&store, &rec);
            tracing::info!(task = %rec.id, state = ?rec.state, "task ended");
        });
    }

    /// Every task this node has, newest first.
    pub fn list(&self) -> Vec<TaskRecord> {
        let live = self.inner.live.lock();
        let mut out: Vec<TaskRecord> = self
            .inner
            .store
            .scan(PREFIX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<TaskRecord>(&v).ok())
            .map(|r| {
                live.get(&r.id)
                    .map(|l| l.record.lock().clone())
                    .unwrap_or(r)
            })
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out
    }

    /// One task.
    pub fn get(&self, id: &str) -> Result<TaskRecord, TaskError> {
        if let Some(l) = self.inner.live.lock().get(id) {
            return Ok(l.record.lock().clone());
        }
        let v = self
            .inner
            .store
            .get(&format!("{PREFIX}{id}"))
            .ok()
            .flatten()
            .ok_or_else(|| TaskError::NotFound(id.into()))?;
        serde_json::from_slice(&v).map_err(|_| TaskError::NotFound(id.into()))
    }

    fn set_state(
        &self,
        id: &str,
        to: TaskState,
        verb: &'static str,
        from: &[TaskState],
    ) -> Result<TaskRecord, TaskError> {
        let live = self.inner.live.lock().get(id).cloned();
        let Some(live) = live else {
            let r = self.get(id)?;
            return Err(TaskError::BadState(id.into(), r.state, verb));
        };
        let mut r = live.record.lock();
        if !from.contains(&r.state) {
            return Err(TaskError::BadState(id.into(), r.state, verb));
        }
        r.state = to;
        r.updated_at = now();
        if to == TaskState::Running {
            *live.run_started.lock() = (Instant::now(), r.run_secs, r.items_done);
        }
        save(&self.inner.store, &r);
        live.control.send_replace(to);
        Ok(r.clone())
    }

    /// Pauses a running task (at its next checkpoint).
    pub fn pause(&self, id: &str) -> Result<TaskRecord, TaskError> {
        self.set_state(id, TaskState::Paused, "pause", &[TaskState::Running])
    }

    /// Resumes a paused task.
    pub fn resume(&self, id: &str) -> Result<TaskRecord, TaskError> {
        self.set_state(id, TaskState::Running, "resume", &[TaskState::Paused])
    }

    /// Stops a running or paused task for good.
    pub fn stop(&self, id: &str) -> Result<TaskRecord, TaskError> {
        self.set_state(
            id,
            TaskState::Stopped,
            "stop",
            &[TaskState::Running, TaskState::Paused],
        )
    }

    /// Changes a task's throttle.
    pub fn throttle(&self, id: &str, items_per_sec: u64) -> Result<TaskRecord, TaskError> {
        let live = self.inner.live.lock().get(id).cloned();
        let Some(live) = live else {
            let r = self.get(id)?;
            return Err(TaskError::BadState(id.into(), r.state, "throttle"));
        };
        let mut r = live.record.lock();
        r.throttle = items_per_sec;
        save(&self.inner.store, &r);
        Ok(r.clone())
    }

    /// Tells every task to stop at its next checkpoint without ending it (it resumes when
    /// mgmtd starts again).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// The test kind "count": counts from its checkpoint up to `params.target` (default 100),
/// one item per step, checkpointing every step. It proves the framework (resume after a
/// kill, pause, throttle, progress) without moving data.
pub struct CountJob;

#[async_trait::async_trait]
impl Job for CountJob {
    async fn run(&self, ctx: &TaskCtx) -> Result<(), JobEnd> {
        let r = ctx.record();
        let target = r
            .params
            .get("target")
            .and_then(|v| v.as_u64())
            .unwrap_or(100);
        if target > 1_000_000_000 {
            return Err(JobEnd::Failed("target must be at most 1e9".into()));
        }
        ctx.set_total(target);
        let mut at = r
            .checkpoint
            .get("next")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        while at < target {
            at += 1;
            ctx.checkpoint(1, 0, serde_json::json!({ "next": at }))
                .await?;
        }
        Ok(())
    }
}

/// The kinds this build knows.
pub fn kinds() -> BTreeMap<String, Arc<dyn Job>> {
    let mut m: BTreeMap<String, Arc<dyn Job>> = BTreeMap::new();
    m.insert("count".into(), Arc::new(CountJob));
    m.insert(
        crate::rebalance::FIX_LAYOUT.into(),
        Arc::new(crate::rebalance::FixLayoutJob),
    );
    m.insert(
        crate::rebalance::MIGRATE.into(),
        Arc::new(crate::rebalance::MigrateJob),
    );
    crate::heal::register_kind(&mut m);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait_for(t: &Tasks, id: &str, f: impl Fn(&TaskRecord) -> bool) -> TaskRecord {
        for _ in 0..500 {
            let r = t.get(id).unwrap();
            if f(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task never got there: {:?}", t.get(id));
    }

    #[tokio::test]
    async fn a_task_resumes_from_its_checkpoint_pauses_and_stops() {
        let d = tempfile::tempdir().unwrap();
        let id = {
            let store = LocalStore::open(d.path()).unwrap();
            let t = Tasks::new(store, "n".into(), kinds());
            let r = t
                .start(StartTaskRequest {
                    kind: "count".into(),
                    volume: None,
                    params: serde_json::json!({"target": 3000}),
                    throttle: 1000,
                })
                .unwrap();
            wait_for(&t, &r.id, |r| r.items_done >= 50).await;
            t.shutdown();
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.id
        };
        let store = LocalStore::open(d.path()).unwrap();
        let saved: TaskRecord =
            serde_json::from_slice(&store.get(&format!("{PREFIX}{id}")).unwrap().unwrap()).unwrap();
        assert!(saved.items_done >= 50);
        let t = Tasks::new(store, "n".into(), kinds());
        t.resume_all();
        let r = wait_for(&t, &id, |r| r.items_done > saved.items_done).await;
        assert_eq!(r.resumed, 1);
        assert!(r.checkpoint["next"].as_u64().unwrap() > saved.items_done);
        t.pause(&id).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = t.get(&id).unwrap().items_done;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            t.get(&id).unwrap().items_done <= a + 1,
            "a paused task keeps working"
        );
        assert!(t.pause(&id).is_err());
        t.throttle(&id, 0).unwrap();
        t.resume(&id).unwrap();
        let r = wait_for(&t, &id, |r| r.state == TaskState::Completed).await;
        assert_eq!(r.items_done, 3000);
        assert!(t.stop(&id).is_err());
    }
}
