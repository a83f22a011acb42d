//! Outgoing raft RPCs and forwarded requests: serde_json bodies posted with
//! reqwest to the peer's `/raft/...` endpoints, each carrying
//! `Authorization: Bearer <pool secret>`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{NodeId, Secret, StateMachine, TypeConfig};

/// Connect timeout of every outgoing request.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound of an append-entries or vote request.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an HTTP exchange with a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No connection could be made: the request was certainly not delivered.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request (or its answer) took longer than the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The peer refused our bearer secret.
    #[error("refused with 401 Unauthorized (pool secret mismatch)")]
    Unauthorized,
    /// The peer's raft node is stopped (HTTP 503).
    #[error("raft node stopped (503 Service Unavailable)")]
    Unavailable,
    /// Any other HTTP status.
    #[error("HTTP status {0}: {1}")]
    Status(u16, String),
    /// The body could not be decoded.
    #[error("undecodable answer: {0}")]
    Decode(String),
    /// Any other transport error (the request may have been delivered).
    #[error("{0}")]
    Other(String),
}

fn classify(e: reqwest::Error, timeout: Duration) -> HttpError {
    if e.is_connect() {
        HttpError::Connect(error_chain(&e))
    } else if e.is_timeout() {
        HttpError::Timeout(timeout)
    } else if e.is_decode() {
        HttpError::Decode(error_chain(&e))
    } else {
        HttpError::Other(error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Builds the shared HTTP client (1 s connect timeout, short idle pool).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client with static configuration")
}

fn url(addr: &str, path: &str) -> String {
    format!("{}{}", addr.trim_end_matches('/'), path)
}

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response, HttpError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    Err(match status.as_u16() {
        401 => HttpError::Unauthorized,
        503 => HttpError::Unavailable,
        code => HttpError::Status(code, resp.text().await.unwrap_or_default()),
    })
}

/// POSTs `body` as JSON to `addr` + `path` and decodes the JSON answer.
pub(crate) async fn post_json<Req, Resp>(
    client: &reqwest::Client,
    secret: &Secret,
    addr: &str,
    path: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, HttpError>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let bearer = format!("Bearer {}", secret.read());
    let resp = client
        .post(url(addr, path))
        .header(reqwest::header::AUTHORIZATION, bearer)
        .timeout(timeout)
        .json(body)
        .send()
        .await
        .map_err(|e| classify(e, timeout))?;
    let resp = check_status(resp).await?;
    resp.json::<Resp>().await.map_err(|e| classify(e, timeout))
}

/// GETs `addr` + `path`; Ok if the peer answered 2xx.
pub(crate) async fn get_ok(
    client: &reqwest::Client,
    secret: &Secret,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), HttpError> {
    let bearer = format!("Bearer {}", secret.read());
    let resp = client
        .get(url(addr, path))
        .header(reqwest::header::AUTHORIZATION, bearer)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| classify(e, timeout))?;
    check_status(resp).await.map(|_| ())
}

/// Creates one [`PeerClient`] per replication target.
pub(crate) struct NetworkFactory {
    pub(crate) id: NodeId,
    pub(crate) client: reqwest::Client,
    pub(crate) secret: Secret,
    /// Per-chunk timeout of install-snapshot requests.
    pub(crate) snapshot_timeout: Duration,
}

impl<S: StateMachine> RaftNetworkFactory<TypeConfig<S>> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            id: self.id,
            target,
            node: node.clone(),
            client: self.client.clone(),
            secret: self.secret.clone(),
            snapshot_timeout: self.snapshot_timeout,
        }
    }
}

/// Sends raft RPCs to one peer.
pub(crate) struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    client: reqwest::Client,
    secret: Secret,
    snapshot_timeout: Duration,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let res: Result<Result<Resp, RaftError<NodeId, E>>, HttpError> = post_json(
            &self.client,
            &self.secret,
            &self.node.addr,
            path,
            req,
            timeout,
        )
        .await;
        match res {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                remote,
            ))),
            // A peer that cannot be connected to, or whose raft is stopped, is
            // unreachable: openraft backs off instead of stalling on it.
            Err(e @ (HttpError::Connect(_) | HttpError::Unavailable)) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(HttpError::Timeout(t)) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: t,
            })),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl<S: StateMachine> RaftNetwork<TypeConfig<S>> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig<S>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let t = option.hard_ttl().min(RPC_TIMEOUT);
        self.call(RPCTypes::AppendEntries, "/raft/append-entries", &rpc, t)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig<S>>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let t = self.snapshot_timeout;
        self.call(RPCTypes::InstallSnapshot, "/raft/install-snapshot", &rpc, t)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let t = option.hard_ttl().min(RPC_TIMEOUT);
        self.call(RPCTypes::Vote, "/raft/vote", &rpc, t).await
    }
}
