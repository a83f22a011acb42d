//! The REST API (axum): every management operation over HTTP with JSON bodies, and the
//! OpenAPI document generated from these handlers at `/openapi.json`. Changes need the
//! pool token as a bearer token; reads do not. Errors are `{"error": "..."}` with a 4xx or
//! 5xx status. The `weft` CLI uses this API as its transport.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use utoipa::OpenApi;

use crate::node::{Node, OpError};
use crate::tasks::{StartTaskRequest, TaskError, TaskRecord, ThrottleRequest};
use crate::types::*;

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            axum::Json(ApiErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<TaskError> for OpError {
    fn from(e: TaskError) -> OpError {
        match e {
            TaskError::NotFound(_) => OpError::not_found(e.to_string()),
            TaskError::UnknownKind(..) => OpError::bad(e.to_string()),
            TaskError::BadState(..) => OpError::conflict(e.to_string()),
        }
    }
}

type Shared = Arc<Node>;
type ApiResult<T> = Result<axum::Json<T>, OpError>;

/// A JSON body whose rejection is our `{"error"}` shape with the parser's reason.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = OpError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, OpError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(OpError::bad(match e {
                JsonRejection::JsonDataError(e) => {
                    format!("the request body does not fit: {}", e.body_text())
                }
                JsonRejection::JsonSyntaxError(e) => {
                    format!("the request body is not valid JSON: {}", e.body_text())
                }
                JsonRejection::MissingJsonContentType(_) => {
                    "the request needs Content-Type: application/json".into()
                }
                other => other.body_text(),
            })),
        }
    }
}

/// Proof that the request carried the pool token.
pub struct Authorized;

impl FromRequestParts<Shared> for Authorized {
    type Rejection = OpError;
    async fn from_request_parts(parts: &mut Parts, node: &Shared) -> Result<Self, OpError> {
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = given else {
            return Err(OpError {
                status: 401,
                message: "this call changes the pool and needs the pool token: Authorization: Bearer <token> (the token file is WORKDIR/token, mode 0600)".into(),
            });
        };
        let want = node.token.read().clone();
        if want.is_empty() || !constant_time_eq(given.as_bytes(), want.as_bytes()) {
            return Err(OpError {
                status: 401,
                message: "wrong token".into(),
            });
        }
        Ok(Authorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn done(message: String) -> ApiResult<Done> {
    Ok(axum::Json(Done { message }))
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Weft management API", description = "Pool, volumes, options and background tasks of a Weft pool. Changes need the pool token as a bearer token."),
    paths(
        list_peers, probe, detach_peer, list_volumes, create_volume, volume_info, delete_volume,
        start_volume, stop_volume, volume_status, set_options, get_options, reset_option,
        reset_all_options, option_help, volfile, statedump, list_tasks, start_task, task_status,
        pause_task, resume_task, stop_task, throttle_task, add_bricks, remove_bricks, replace_brick, rebalance_start,
        rebalance_status, rebalance_control, heal_start, heal_status, heal_info, heal_split_brain
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route: the public API, the calls peers make of each other, the consensus RPCs.
pub fn router(node: Shared) -> Router {
    let api = Router::new()
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .route("/v1/peers", get(list_peers).post(probe))
        .route("/v1/peers/{host}", axum::routing::delete(detach_peer))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", get(volume_info).delete(delete_volume))
        .route("/v1/volumes/{name}/start", post(start_volume))
        .route("/v1/volumes/{name}/stop", post(stop_volume))
        .route("/v1/volumes/{name}/status", get(volume_status))
        .route(
            "/v1/volumes/{name}/options",
            get(get_options).put(set_options).delete(reset_all_options),
        )
        .route(
            "/v1/volumes/{name}/options/{key}",
            axum::routing::delete(reset_option),
        )
        .route("/v1/volumes/{name}/volfile", get(volfile))
        .route("/v1/volumes/{name}/statedump", get(statedump))
        .route("/v1/volumes/{name}/bricks", post(add_bricks))
        .route("/v1/volumes/{name}/remove-brick", post(remove_bricks))
        .route("/v1/volumes/{name}/replace-brick", post(replace_brick))
        .route(
            "/v1/volumes/{name}/rebalance",
            get(rebalance_status).post(rebalance_start),
        )
        .route("/v1/volumes/{name}/heal", get(heal_status).post(heal_start))
        .route("/v1/volumes/{name}/heal/info", get(heal_info))
        .route(
            "/v1/volumes/{name}/heal/split-brain",
            post(heal_split_brain),
        )
        .route(
            "/v1/volumes/{name}/rebalance/{action}",
            post(rebalance_control),
        )
        .route("/v1/options", get(option_help))
        .route("/v1/tasks", get(list_tasks).post(start_task))
        .route("/v1/tasks/{id}", get(task_status))
        .route("/v1/tasks/{id}/pause", post(pause_task))
        .route("/v1/tasks/{id}/resume", post(resume_task))
        .route("/v1/tasks/{id}/stop", post(stop_task))
        .route("/v1/tasks/{id}/throttle", post(throttle_task))
        .route("/internal/info", get(internal_info))
        .route("/internal/join", post(internal_join))
        .route("/internal/leave", post(internal_leave))
        .route("/internal/check-bricks", post(internal_check_bricks))
        .route("/internal/bricks", get(internal_bricks))
        .route("/internal/statedump", get(internal_statedump))
        .route("/internal/tasks", post(start_peer_task))
        .route("/internal/mounts/{name}", get(internal_mounts))
        .route("/internal/brick-data", post(internal_brick_data))
        .fallback(|| async { OpError::not_found("no such API path (see /openapi.json)") })
        .with_state(node.clone());
    api.merge(node.consensus.router())
}

#[utoipa::path(get, path = "/v1/peers", responses((status = 200, body = [PeerInfo])))]
async fn list_peers(State(n): State<Shared>) -> ApiResult<Vec<PeerInfo>> {
    Ok(axum::Json(n.peer_list().await))
}

#[utoipa::path(post, path = "/v1/peers", request_body = ProbeRequest, security(("token" = [])), responses((status = 200, body = Done), (status = 409, body = ApiErrorBody)))]
async fn probe(
    State(n): State<Shared>,
    _a: Authorized,
    Body(r): Body<ProbeRequest>,
) -> ApiResult<Done> {
    done(n.probe(&r.host).await?)
}

/// `?force=true`.
#[derive(Deserialize, Default)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, path = "/v1/peers/{host}", params(("host" = String, Path), ("force" = Option<bool>, Query)), security(("token" = [])), responses((status = 200, body = Done)))]
async fn detach_peer(
    State(n): State<Shared>,
    _a: Authorized,
    Path(host): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<Done> {
    done(n.detach(&host, q.force).await?)
}

#[utoipa::path(get, path = "/v1/volumes", responses((status = 200, body = [VolumeInfo])))]
async fn list_volumes(State(n): State<Shared>) -> ApiResult<Vec<VolumeInfo>> {
    Ok(axum::Json(n.volume_info(None)?))
}

#[utoipa::path(post, path = "/v1/volumes", request_body = CreateVolumeRequest, security(("token" = [])), responses((status = 200, body = Done), (status = 400, body = ApiErrorBody)))]
async fn create_volume(
    State(n): State<Shared>,
    _a: Authorized,
    Body(r): Body<CreateVolumeRequest>,
) -> ApiResult<Done> {
    done(n.create_volume(r).await?)
}

#[utoipa::path(get, path = "/v1/volumes/{name}", params(("name" = String, Path)), responses((status = 200, body = VolumeInfo), (status = 404, body = ApiErrorBody)))]
async fn volume_info(State(n): State<Shared>, Path(name): Path<String>) -> ApiResult<VolumeInfo> {
    let mut v = n.volume_info(Some(&name))?;
    Ok(axum::Json(v.remove(0)))
}

#[utoipa::path(delete, path = "/v1/volumes/{name}", params(("name" = String, Path)), security(("token" = [])), responses((status = 200, body = Done)))]
async fn delete_volume(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
) -> ApiResult<Done> {
    done(n.delete_volume(&name).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/start", params(("name" = String, Path)), request_body = StartRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn start_volume(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<StartRequest>,
) -> ApiResult<Done> {
    done(n.start_volume(&name, r.force).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/stop", params(("name" = String, Path)), security(("token" = [])), responses((status = 200, body = Done)))]
async fn stop_volume(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
) -> ApiResult<Done> {
    done(n.stop_volume(&name).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/bricks", params(("name" = String, Path)), request_body = AddBricksRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn add_bricks(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<AddBricksRequest>,
) -> ApiResult<Done> {
    done(n.add_bricks(&name, r).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/replace-brick", params(("name" = String, Path)), request_body = ReplaceBrickRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn replace_brick(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<ReplaceBrickRequest>,
) -> ApiResult<Done> {
    done(n.replace_brick(&name, r).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/remove-brick", params(("name" = String, Path)), request_body = RemoveBricksRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn remove_bricks(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<RemoveBricksRequest>,
) -> ApiResult<Done> {
    done(n.remove_bricks(&name, r).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/rebalance", params(("name" = String, Path)), request_body = RebalanceRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn rebalance_start(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<RebalanceRequest>,
) -> ApiResult<Done> {
    done(n.rebalance_start(&name, r).await?)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/heal", params(("name" = String, Path)), request_body = HealRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn heal_start(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<HealRequest>,
) -> ApiResult<Done> {
    done(n.heal_start(&name, r).await?)
}

#[utoipa::path(get, path = "/v1/volumes/{name}/heal", params(("name" = String, Path)), responses((status = 200, body = Vec<TaskRecord>)))]
async fn heal_status(
    State(n): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Vec<TaskRecord>> {
    Ok(axum::Json(n.heal_tasks(&name).await?))
}

/// What `heal info` lists.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct HealInfoQuery {
    /// `all` (default), `summary` or `split-brain`.
    which: Option<String>,
}

#[utoipa::path(get, path = "/v1/volumes/{name}/heal/info", params(("name" = String, Path), HealInfoQuery), responses((status = 200, body = crate::heal::HealInfo)))]
async fn heal_info(
    State(n): State<Shared>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HealInfoQuery>,
) -> ApiResult<crate::heal::HealInfo> {
    Ok(axum::Json(
        n.heal_info(&name, q.which.as_deref().unwrap_or("all"))
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/heal/split-brain", params(("name" = String, Path)), request_body = SplitBrainRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn heal_split_brain(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<SplitBrainRequest>,
) -> ApiResult<Done> {
    done(n.heal_split_brain(&name, r).await?)
}

#[utoipa::path(get, path = "/v1/volumes/{name}/rebalance", params(("name" = String, Path)), responses((status = 200, body = RebalanceStatus)))]
async fn rebalance_status(
    State(n): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<RebalanceStatus> {
    Ok(axum::Json(n.rebalance_status(&name).await?))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/rebalance/{action}", params(("name" = String, Path), ("action" = String, Path, description = "stop, pause or resume")), security(("token" = [])), responses((status = 200, body = Done)))]
async fn rebalance_control(
    State(n): State<Shared>,
    _a: Authorized,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult<Done> {
    done(n.rebalance_control(&name, &action).await?)
}

#[utoipa::path(get, path = "/v1/volumes/{name}/status", params(("name" = String, Path)), responses((status = 200, body = VolumeStatusInfo)))]
async fn volume_status(
    State(n): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<VolumeStatusInfo> {
    Ok(axum::Json(n.volume_status(&name).await?))
}

#[utoipa::path(put, path = "/v1/volumes/{name}/options", params(("name" = String, Path)), request_body = SetOptionsRequest, security(("token" = [])), responses((status = 200, body = Done)))]
async fn set_options(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
    Body(r): Body<SetOptionsRequest>,
) -> ApiResult<Done> {
    done(n.set_options(&name, r.options).await?)
}

/// `?key=KEY` (or `all`, the default).
#[derive(Deserialize, Default)]
struct KeyQuery {
    key: Option<String>,
}

#[utoipa::path(get, path = "/v1/volumes/{name}/options", params(("name" = String, Path), ("key" = Option<String>, Query)), responses((status = 200, body = [OptionInfo])))]
async fn get_options(
    State(n): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Vec<OptionInfo>> {
    Ok(axum::Json(n.get_options(&name, q.key.as_deref())?))
}

#[utoipa::path(delete, path = "/v1/volumes/{name}/options/{key}", params(("name" = String, Path), ("key" = String, Path)), security(("token" = [])), responses((status = 200, body = Done)))]
async fn reset_option(
    State(n): State<Shared>,
    _a: Authorized,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<Done> {
    done(n.reset_options(&name, Some(key)).await?)
}

#[utoipa::path(delete, path = "/v1/volumes/{name}/options", params(("name" = String, Path)), security(("token" = [])), responses((status = 200, body = Done)))]
async fn reset_all_options(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
) -> ApiResult<Done> {
    done(n.reset_options(&name, None).await?)
}

#[utoipa::path(get, path = "/v1/options", responses((status = 200, body = [OptionInfo])))]
async fn option_help(State(n): State<Shared>) -> ApiResult<Vec<OptionInfo>> {
    Ok(axum::Json(n.option_help()))
}

/// `?after=VERSION&wait=SECS`.
#[derive(Deserialize, Default)]
struct VolfileQuery {
    after: Option<u64>,
    wait: Option<u64>,
    /// The polling mount's id (`HOST:PID`), which then counts as running `after`.
    client: Option<String>,
}

#[utoipa::path(get, path = "/v1/volumes/{name}/volfile", params(("name" = String, Path), ("after" = Option<u64>, Query), ("wait" = Option<u64>, Query)), responses((status = 200, body = VolfileAnswer), (status = 204, description = "nothing newer than `after` within `wait` seconds"), (status = 404, body = ApiErrorBody)))]
async fn volfile(
    State(n): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<VolfileQuery>,
) -> Result<Response, OpError> {
    match q.after {
        None => Ok(axum::Json(n.client_volfile(&name)?).into_response()),
        Some(after) => {
            if let Some(c) = &q.client {
                n.mounts.note(&name, c, after);
            }
            let wait = Duration::from_secs(q.wait.unwrap_or(30).min(60));
            match n.wait_volfile(&name, after, wait).await? {
                Some(a) => Ok(axum::Json(a).into_response()),
                None => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/volumes/{name}/statedump", params(("name" = String, Path)), security(("token" = [])), responses((status = 200, body = BTreeMap<String, String>)))]
async fn statedump(
    State(n): State<Shared>,
    _a: Authorized,
    Path(name): Path<String>,
) -> ApiResult<BTreeMap<String, String>> {
    Ok(axum::Json(n.statedump(&name).await?))
}

#[utoipa::path(get, path = "/v1/tasks", responses((status = 200, body = [TaskRecord])))]
async fn list_tasks(State(n): State<Shared>) -> ApiResult<Vec<TaskRecord>> {
    Ok(axum::Json(n.tasks.list()))
}

/// `POST /internal/brick-data`: counts the data files left in one of this node's bricks
/// (only paths of bricks of the pool's volumes on this node).
async fn internal_brick_data(
    State(n): State<Shared>,
    _a: Authorized,
    Body(r): Body<BrickData>,
) -> ApiResult<BrickData> {
    Ok(axum::Json(n.brick_data(&r.path).await?))
}

/// `GET /internal/mounts/{name}`: the mounts following the volume through this node.
async fn internal_mounts(
    State(n): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Vec<crate::mounts::MountSeen>> {
    Ok(axum::Json(n.mounts.of(&name)))
}

/// `POST /internal/tasks`: a peer starts its part of a pool-wide task here (a rebalance's
/// migrate task on every node holding bricks).
async fn start_peer_task(
    State(n): State<Shared>,
    _a: Authorized,
    Body(r): Body<StartTaskRequest>,
) -> ApiResult<TaskRecord> {
    if let Some(v) = &r.volume {
        n.volume_info(Some(v))?;
    }
    Ok(axum::Json(n.tasks.start(r)?))
}

#[utoipa::path(post, path = "/v1/tasks", request_body = StartTaskRequest, security(("token" = [])), responses((status = 200, body = TaskRecord)))]
async fn start_task(
    State(n): State<Shared>,
    _a: Authorized,
    Body(r): Body<StartTaskRequest>,
) -> ApiResult<TaskRecord> {
    if crate::rebalance::is_rebalance(&r.kind) {
        return Err(OpError::bad(format!(
            "{} tasks are started with POST /v1/volumes/{{name}}/rebalance (weft volume rebalance VOL ...)",
            r.kind
        )));
    }
    if let Some(v) = &r.volume {
        n.volume_info(Some(v))?;
    }
    Ok(axum::Json(n.tasks.start(r)?))
}

#[utoipa::path(get, path = "/v1/tasks/{id}", params(("id" = String, Path)), responses((status = 200, body = TaskRecord)))]
async fn task_status(State(n): State<Shared>, Path(id): Path<String>) -> ApiResult<TaskRecord> {
    Ok(axum::Json(n.tasks.get(&id)?))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/pause", params(("id" = String, Path)), security(("token" = [])), responses((status = 200, body = TaskRecord)))]
async fn pause_task(
    State(n): State<Shared>,
    _a: Authorized,
    Path(id): Path<String>,
) -> ApiResult<TaskRecord> {
    Ok(axum::Json(n.tasks.pause(&id)?))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/resume", params(("id" = String, Path)), security(("token" = [])), responses((status = 200, body = TaskRecord)))]
async fn resume_task(
    State(n): State<Shared>,
    _a: Authorized,
    Path(id): Path<String>,
) -> ApiResult<TaskRecord> {
    Ok(axum::Json(n.tasks.resume(&id)?))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/stop", params(("id" = String, Path)), security(("token" = [])), responses((status = 200, body = TaskRecord)))]
async fn stop_task(
    State(n): State<Shared>,
    _a: Authorized,
    Path(id): Path<String>,
) -> ApiResult<TaskRecord> {
    Ok(axum::Json(n.tasks.stop(&id)?))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/throttle", params(("id" = String, Path)), request_body = ThrottleRequest, security(("token" = [])), responses((status = 200, body = TaskRecord)))]
async fn throttle_task(
    State(n): State<Shared>,
    _a: Authorized,
    Path(id): Path<String>,
    Body(r): Body<ThrottleRequest>,
) -> ApiResult<TaskRecord> {
    Ok(axum::Json(n.tasks.throttle(&id, r.items_per_sec)?))
}

async fn internal_info(State(n): State<Shared>) -> ApiResult<NodeInfo> {
    Ok(axum::Json(n.info()))
}

async fn internal_join(State(n): State<Shared>, Body(r): Body<JoinRequest>) -> ApiResult<Done> {
    done(n.join(r).await?)
}

async fn internal_leave(State(n): State<Shared>, _a: Authorized) -> ApiResult<Done> {
    done(n.leave().await?)
}

async fn internal_check_bricks(
    State(n): State<Shared>,
    _a: Authorized,
    Body(r): Body<CheckBricksRequest>,
) -> ApiResult<Done> {
    n.check_bricks(&r).map_err(OpError::bad)?;
    done("ok".into())
}

async fn internal_bricks(State(n): State<Shared>) -> ApiResult<LocalBricks> {
    Ok(axum::Json(n.bricks.local_status().await))
}

async fn internal_statedump(State(n): State<Shared>, _a: Authorized) -> ApiResult<Done> {
    done(n.bricks.statedump().await.map_err(OpError::unavailable)?)
}
