//! The HTTP side: the `/raft/...` endpoints served to peers, behind a bearer
//! secret check, and the wire types of forwarded requests.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};

use crate::{Error, Inner, NodeId, StateMachine, TypeConfig};

/// Answer of a request forwarded to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ForwardReply<T> {
    /// Done by the leader; `index` is the log index the caller must have
    /// applied before it can see the effect.
    Ok { index: u64, value: T },
    /// The addressed node is not the leader (any more): ask again.
    NotLeader,
    /// The leader tried and failed; the message says why.
    Failed { message: String },
}

/// A membership change forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum MembershipOp {
    AddVoter { id: NodeId, addr: String },
    Remove { id: NodeId },
}

/// Body of a forwarded proposal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct ProposeBody<S: StateMachine> {
    pub cmd: S::Command,
}

type St<S> = State<Arc<Inner<S>>>;

/// Compares without an early exit so the secret cannot be guessed byte by byte
/// from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth<S: StateMachine>(State(inner): St<S>, req: Request, next: Next) -> Response {
    let ok = {
        let secret = inner.secret.read();
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            // An empty pool secret means "not configured": accept nobody.
            Some(p) if !secret.is_empty() => constant_time_eq(p.as_bytes(), secret.as_bytes()),
            _ => false,
        }
    };
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "raft RPC refused: missing or wrong pool secret\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// 503 with `Connection: close`, so callers drop pooled connections to a
/// stopped node and treat it as unreachable.
fn stopped() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "raft node stopped\n").into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn append_entries<S: StateMachine>(
    State(inner): St<S>,
    Json(req): Json<AppendEntriesRequest<TypeConfig<S>>>,
) -> Response {
    let Some(raft) = inner.live_raft() else {
        return stopped();
    };
    Json(raft.append_entries(req).await).into_response()
}

async fn vote<S: StateMachine>(
    State(inner): St<S>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Response {
    let Some(raft) = inner.live_raft() else {
        return stopped();
    };
    Json(raft.vote(req).await).into_response()
}

async fn install_snapshot<S: StateMachine>(
    State(inner): St<S>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig<S>>>,
) -> Response {
    let Some(raft) = inner.live_raft() else {
        return stopped();
    };
    Json(raft.install_snapshot(req).await).into_response()
}

fn reply<T: Serialize>(r: Result<(u64, T), Error>) -> Response {
    let body = match r {
        Ok((index, value)) => ForwardReply::Ok { index, value },
        Err(Error::NotLeader) => ForwardReply::NotLeader,
        Err(e) => ForwardReply::Failed {
            message: e.to_string(),
        },
    };
    Json(body).into_response()
}

async fn forward_propose<S: StateMachine>(
    State(inner): St<S>,
    Json(body): Json<ProposeBody<S>>,
) -> Response {
    if inner.live_raft().is_none() {
        return stopped();
    }
    reply(inner.leader_propose(body.cmd).await)
}

async fn forward_membership<S: StateMachine>(
    State(inner): St<S>,
    Json(op): Json<MembershipOp>,
) -> Response {
    if inner.live_raft().is_none() {
        return stopped();
    }
    let r = match op {
        MembershipOp::AddVoter { id, addr } => inner.leader_add_voter(id, addr).await,
        MembershipOp::Remove { id } => inner.leader_remove(id).await,
    };
    reply(r.map(|index| (index, ())))
}

async fn read_index<S: StateMachine>(State(inner): St<S>) -> Response {
    if inner.live_raft().is_none() {
        return stopped();
    }
    reply(inner.leader_read_index().await.map(|i| (i, ())))
}

async fn ping<S: StateMachine>(State(inner): St<S>) -> Response {
    if inner.live_raft().is_none() {
        return stopped();
    }
    Json(inner.id).into_response()
}

/// Builds the router; see [`crate::Consensus::router`].
pub(crate) fn router<S: StateMachine>(inner: Arc<Inner<S>>) -> Router {
    Router::new()
        .route("/raft/append-entries", post(append_entries::<S>))
        .route("/raft/vote", post(vote::<S>))
        .route("/raft/install-snapshot", post(install_snapshot::<S>))
        .route("/raft/forward-propose", post(forward_propose::<S>))
        .route("/raft/forward-membership", post(forward_membership::<S>))
        .route("/raft/read-index", post(read_index::<S>))
        .route("/raft/ping", get(ping::<S>))
        // Batches of log entries and snapshot chunks exceed axum's 2 MB default.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(inner.clone(), auth::<S>))
        .with_state(inner)
}

/// Largest request body accepted on `/raft/...`.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Timeout for probing a peer with `/raft/ping`.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(1);
