//! An HTTP client of the REST API: the `weft` CLI uses it to reach a mgmtd, and every
//! mgmtd uses it to reach its peers. Errors carry the HTTP status and the server's
//! `{"error": ...}` message, or say that the server could not be reached.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::*;

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status, or None when no answer came.
    pub status: Option<u16>,
    /// The server's message, or why it could not be reached.
    pub message: String,
}

/// A client of one mgmtd.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client of the mgmtd at `base` ("http://host:port"), sending `token` as the bearer
    /// token when given; each call gives up after `timeout`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Api {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| ApiError {
            status: None,
            message: if e.is_connect() {
                format!(
                    "cannot connect to mgmtd at {}: is `weft mgmtd` running there?",
                    self.base
                )
            } else if e.is_timeout() {
                format!("mgmtd at {} did not answer in time", self.base)
            } else {
                format!("talking to mgmtd at {}: {e}", self.base)
            },
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ApiError {
            status: Some(status.as_u16()),
            message: format!("reading mgmtd's answer: {e}"),
        })?;
        if status.is_success() {
            let body: &[u8] = if body.is_empty() { b"null" } else { &body };
            serde_json::from_slice(body).map_err(|e| ApiError {
                status: Some(status.as_u16()),
                message: format!("mgmtd's answer is not what this client expects: {e}"),
            })
        } else {
            let message = serde_json::from_slice::<ApiErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
            Err(ApiError {
                status: Some(status.as_u16()),
                message,
            })
        }
    }

    /// GET `path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// POST `body` to `path`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// PUT `body` to `path`.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// DELETE `path`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}

/// What one mgmtd asks of another.
#[derive(Clone, Default)]
pub struct PeerClient;

impl PeerClient {
    fn api(base: &str, token: Option<&str>, secs: u64) -> Api {
        Api::new(base, token.map(str::to_string), Duration::from_secs(secs))
    }

    /// The node's identity and pool size (no token).
    pub async fn info(&self, base: &str) -> Result<NodeInfo, ApiError> {
        Self::api(base, None, 2).get("/internal/info").await
    }

    /// Invites a fresh node into this pool.
    pub async fn join(&self, base: &str, req: &JoinRequest) -> Result<Done, ApiError> {
        Self::api(base, None, 30).post("/internal/join", req).await
    }

    /// Tells a detached node it is on its own again.
    pub async fn leave(&self, base: &str, token: &str) -> Result<Done, ApiError> {
        Self::api(base, Some(token), 30)
            .post("/internal/leave", &())
            .await
    }

    /// Asks the node to check its own brick directories.
    pub async fn check_bricks(
        &self,
        base: &str,
        token: &str,
        req: &CheckBricksRequest,
    ) -> Result<Done, ApiError> {
        Self::api(base, Some(token), 10)
            .post("/internal/check-bricks", req)
            .await
    }

    /// The node's brick process and bricks.
    pub async fn local_bricks(&self, base: &str) -> Result<LocalBricks, ApiError> {
        Self::api(base, None, 3).get("/internal/bricks").await
    }

    /// The node's brick process statedump.
    pub async fn statedump(&self, base: &str, token: &str) -> Result<String, ApiError> {
        let d: Done = Self::api(base, Some(token), 10)
            .get("/internal/statedump")
            .await?;
        Ok(d.message)
    }

    /// The node's tasks.
    pub async fn tasks(&self, base: &str) -> Result<Vec<crate::tasks::TaskRecord>, ApiError> {
        Self::api(base, None, 5).get("/v1/tasks").await
    }

    /// What data brick directory `path` of the node still holds.
    pub async fn brick_data(
        &self,
        base: &str,
        token: &str,
        path: &str,
    ) -> Result<BrickData, ApiError> {
        let req = BrickData {
            path: path.to_string(),
            ..Default::default()
        };
        Self::api(base, Some(token), 600)
            .post("/internal/brick-data", &req)
            .await
    }

    /// The mounts following volume `name` through the node.
    pub async fn mounts(
        &self,
        base: &str,
        name: &str,
    ) -> Result<Vec<crate::mounts::MountSeen>, ApiError> {
        Self::api(base, None, 5)
            .get(&format!("/internal/mounts/{name}"))
            .await
    }

    /// Starts a task on the node.
    pub async fn start_task(
        &self,
        base: &str,
        token: &str,
        req: &crate::tasks::StartTaskRequest,
    ) -> Result<crate::tasks::TaskRecord, ApiError> {
        Self::api(base, Some(token), 10)
            .post("/internal/tasks", req)
            .await
    }

    /// Applies `action` (`stop`, `pause`, `resume`) to one of the node's tasks.
    pub async fn task_action(
        &self,
        base: &str,
        token: &str,
        id: &str,
        action: &str,
    ) -> Result<crate::tasks::TaskRecord, ApiError> {
        Self::api(base, Some(token), 5)
            .post(&format!("/v1/tasks/{id}/{action}"), &())
            .await
    }

    /// Stops one of the node's tasks.
    pub async fn stop_task(
        &self,
        base: &str,
        token: &str,
        id: &str,
    ) -> Result<crate::tasks::TaskRecord, ApiError> {
        Self::api(base, Some(token), 5)
            .post(&format!("/v1/tasks/{id}/stop"), &())
            .await
    }
}
