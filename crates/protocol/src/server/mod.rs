//! The brick server: `protocol/server` graphs served from one process on one port.
//!
//! A server volfile declares one graph per brick, each topped by a `protocol/server`
//! volume whose single subvolume names the brick (the client's `remote-subvolume`).
//! [`BrickServer`] serves every brick it has been given on one listener (brick
//! multiplexing); bricks are attached and detached while it runs, through
//! [`BrickServer::attach`] and [`BrickServer::detach`], and their options change in place
//! through [`BrickServer::reconfigure`] (the control socket calls them).

mod conn;
pub mod control;
mod dispatch;
pub mod limits;
mod sessions;
mod upcalls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::{Graph, Registry, Xlator, XlatorInit, XlatorRef, XlatorType};

use crate::auth::AddrList;
use crate::identity::{NameList, Squash};
use crate::tls::ServerTls;
pub use limits::Limits;
use limits::{more, Counters};

const SERVER_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "auth.allow",
        kind: OptionKind::Str,
        default: Some("*"),
        description: "Client addresses served: comma-separated addresses, CIDR blocks or patterns (192.168.*); * for all.",
    },
    OptionSpec {
        key: "auth.reject",
        kind: OptionKind::Str,
        default: Some(""),
        description: "Client addresses refused even when auth.allow matches them (same forms).",
    },
    OptionSpec {
        key: "transport.socket.ssl-enabled",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Refuse clients that did not connect with TLS (the server's certificate is brickd's --tls-cert).",
    },
    OptionSpec {
        key: "auth.ssl-allow",
        kind: OptionKind::Str,
        default: Some("*"),
        description: "Common names (CN) of the client certificates served: comma-separated names or patterns (* and ?); * for every client. Needs transport.socket.ssl-enabled on and brickd --tls-ca.",
    },
    OptionSpec {
        key: "server.root-squash",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Run requests from uid 0 as server.anonuid and from gid 0 as server.anongid; other ids are unchanged.",
    },
    OptionSpec {
        key: "server.all-squash",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Run every request as server.anonuid and server.anongid, whoever sent it.",
    },
    OptionSpec {
        key: "server.anonuid",
        kind: OptionKind::Int {
            min: 0,
            max: MAX_ID,
        },
        default: Some("65534"),
        description: "The uid squashed requests run as (server.root-squash, server.all-squash).",
    },
    OptionSpec {
        key: "server.anongid",
        kind: OptionKind::Int {
            min: 0,
            max: MAX_ID,
        },
        default: Some("65534"),
        description: "The gid squashed requests run as (server.root-squash, server.all-squash).",
    },
    OptionSpec {
        key: "grace-timeout",
        kind: OptionKind::Duration,
        default: Some("10"),
        description: "Seconds a disconnected client's open files and locks are kept for it to reconnect and get them back (0: released at once; at most 1800).",
    },
];

/// The longest `grace-timeout` (GlusterFS's bound).
const MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(1800);

/// The largest uid or gid: 2^32 - 1 means "no id" (chown's "leave unchanged").
const MAX_ID: i64 = u32::MAX as i64 - 1;

/// The `protocol/server` type: the top of a brick graph in a server volfile.
pub struct ServerType;

impl XlatorType for ServerType {
    fn type_name(&self) -> &'static str {
        "protocol/server"
    }
    fn description(&self) -> &'static str {
        "Exports its subvolume as a brick to protocol/client translators over TCP (weft brickd)."
    }
    fn options(&self) -> &'static [OptionSpec] {
        SERVER_OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Policy::from_options(&init.options)?;
        Ok(Arc::new(ServerXlator {
            name: init.name,
            children: init.children,
        }))
    }
}

/// `protocol/server` in a graph: FOPs pass through to the brick below.
struct ServerXlator {
    name: String,
    children: Vec<XlatorRef>,
}

#[async_trait::async_trait]
impl Xlator for ServerXlator {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }
    /// Every option changes live: this only checks them; [`BrickServer::reconfigure`]
    /// swaps the brick's [`Policy`] in (the connections read it, not this translator).
    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        Policy::from_options(options).map(|_| ())
    }
}

/// Who a brick serves, and as whom their requests run.
#[derive(Clone, Debug, PartialEq)]
struct Policy {
    allow: AddrList,
    reject: AddrList,
    tls_required: bool,
    ssl_allow: NameList,
    squash: Squash,
    /// How long a disconnected client's state is kept (`grace-timeout`).
    grace: std::time::Duration,
}

impl Policy {
    fn from_options(o: &Options) -> Result<Policy, String> {
        let id = |key: &str| {
            u32::try_from(o.int(key))
                .map_err(|_| format!("{key}: {} is not a user or group id", o.int(key)))
        };
        let p = Policy {
            allow: AddrList::parse(o.str("auth.allow")).map_err(|e| format!("auth.allow: {e}"))?,
            reject: AddrList::parse(o.str("auth.reject"))
                .map_err(|e| format!("auth.reject: {e}"))?,
            tls_required: o.bool("transport.socket.ssl-enabled"),
            ssl_allow: NameList::parse(o.str("auth.ssl-allow"))
                .map_err(|e| format!("auth.ssl-allow: {e}"))?,
            squash: Squash {
                root: o.bool("server.root-squash"),
                all: o.bool("server.all-squash"),
                anonuid: id("server.anonuid")?,
                anongid: id("server.anongid")?,
            },
            grace: o.duration("grace-timeout"),
        };
        if p.grace > MAX_GRACE {
            return Err(format!(
                "grace-timeout: {:?} is longer than the {} s allowed",
                p.grace,
                MAX_GRACE.as_secs()
            ));
        }
        if !p.ssl_allow.allows_all() && !p.tls_required {
            return Err(format!(
                "auth.ssl-allow {:?} needs transport.socket.ssl-enabled on: a client that connects without TLS has no certificate name to check",
                o.str("auth.ssl-allow")
            ));
        }
        Ok(p)
    }

    /// Why this policy refuses a client connected from `peer` (with TLS or not, with this
    /// client certificate, DER), named `client` in the reason; `None` when it serves it.
    /// Checked at the handshake, and again on the connections of a brick reconfigured.
    fn refusal(
        &self,
        brick: &str,
        client: &str,
        peer: std::net::IpAddr,
        tls: bool,
        cert: Option<&[u8]>,
    ) -> Option<String> {
        if let Err(why) = crate::auth::check(&self.allow, &self.reject, peer) {
            Some(format!("brick {brick:?} refuses {client}: {why}"))
        } else if self.tls_required && !tls {
            Some(format!(
                "brick {brick:?} requires TLS (transport.socket.ssl-enabled)"
            ))
        } else if let Err(why) = crate::identity::check_cert(&self.ssl_allow, cert) {
            Some(format!("brick {brick:?} refuses {client}: {why}"))
        } else {
            None
        }
    }
}

/// One brick being served.
struct Brick {
    name: String,
    graph: Graph,
    /// Its access policy and squash settings, swapped in place by a reconfigure. Each
    /// connection subscribes at its handshake and keeps a copy of what it needs per
    /// request, so reading it costs a request nothing; a swap wakes the connections, which
    /// close if the new policy refuses them.
    policy: watch::Sender<Arc<Policy>>,
    /// Flips to true when the brick is detached; its connections then close.
    detached: watch::Sender<bool>,
    clients: AtomicUsize,
    /// Clients' state (open files, lock identity) by session id: connected ones, and
    /// disconnected ones kept for `grace-timeout`.
    sessions: sessions::Sessions,
    /// The connected clients that take upcalls (cache invalidations).
    upcalls: upcalls::Routes,
}

impl Brick {
    fn top(&self) -> &XlatorRef {
        self.graph.top()
    }
}

/// Serves bricks on one listener. See the module docs.
pub struct BrickServer {
    bricks: RwLock<BTreeMap<String, Arc<Brick>>>,
    registry: Registry,
    tls: Option<ServerTls>,
    limits: Limits,
    next_client: AtomicU64,
    counters: Arc<Counters>,
    /// Held while a reconfigure runs, so two never interleave.
    reconfiguring: tokio::sync::Mutex<()>,
}

impl BrickServer {
    /// A server with no bricks yet, building graphs against `registry`, accepting TLS
    /// connections when `tls` is given.
    pub fn new(registry: Registry, tls: Option<ServerTls>, limits: Limits) -> Arc<BrickServer> {
        Arc::new(BrickServer {
            bricks: RwLock::new(BTreeMap::new()),
            registry,
            tls,
            limits,
            next_client: AtomicU64::new(1),
            counters: Arc::new(Counters::default()),
            reconfiguring: tokio::sync::Mutex::new(()),
        })
    }

    /// Starts serving every brick (every `protocol/server` graph) in `volfile`. All or
    /// nothing: a volfile with an error, a brick name already served, or a brick that
    /// cannot start changes nothing. Returns the brick names added.
    pub async fn attach(&self, volfile: &str) -> Result<Vec<String>, String> {
        let vf = Volfile::parse(volfile).map_err(|e| format!("server volfile: {e}"))?;
        Graph::check(&vf, &self.registry).map_err(|e| format!("server volfile: {e}"))?;
        let servers: Vec<_> = vf
            .volumes
            .iter()
            .filter(|v| v.type_name == "protocol/server")
            .collect();
        if servers.is_empty() {
            return Err(
                "server volfile has no protocol/server volume: each brick graph must be topped by one"
                    .into(),
            );
        }
        let mut new = Vec::new();
        for s in &servers {
            let brick = s.subvolumes[0].clone();
            if self.bricks.read().contains_key(&brick) || new.iter().any(|(n, _)| n == &brick) {
                return Err(format!("brick {brick:?} is already served by this process"));
            }
            let policy = self.policy_of(&brick, s)?;
            let sub = vf.subgraph(&s.name).expect("declared");
            let graph =
                Graph::build(&sub, &self.registry).map_err(|e| format!("brick {brick:?}: {e}"))?;
            new.push((brick, (graph, policy)));
        }
        let mut names = Vec::new();
        let mut map = self.bricks.write();
        // Checked again under the lock: another attach may have raced this one.
        if let Some((dup, _)) = new.iter().find(|(n, _)| map.contains_key(n)) {
            return Err(format!("brick {dup:?} is already served by this process"));
        }
        for (name, (graph, policy)) in new {
            let (detached, _) = watch::channel(false);
            tracing::info!(brick = %name, "brick attached");
            let events = graph.take_events();
            let brick = Arc::new(Brick {
                name: name.clone(),
                graph,
                policy: watch::channel(Arc::new(policy)).0,
                detached,
                clients: AtomicUsize::new(0),
                sessions: sessions::Sessions::default(),
                upcalls: upcalls::Routes::default(),
            });
            if let Some(events) = events {
                tokio::spawn(upcalls::deliver(Arc::downgrade(&brick), events));
            }
            map.insert(name.clone(), brick);
            names.push(name);
        }
        Ok(names)
    }

    /// The access policy of `brick` as its `protocol/server` declaration `s` sets it, checked
    /// against what this server can do (a certificate for TLS, a client CA for
    /// certificate names).
    fn policy_of(&self, brick: &str, s: &VolumeDecl) -> Result<Policy, String> {
        let given: Vec<(String, String)> = s
            .options
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect();
        let opts = Options::validate(SERVER_OPTIONS, &given).map_err(|(_, e)| e)?;
        let policy = Policy::from_options(&opts)?;
        if policy.tls_required && self.tls.is_none() {
            return Err(format!(
                "brick {brick:?} requires TLS (transport.socket.ssl-enabled) but this server was started without --tls-cert/--tls-key"
            ));
        }
        if !policy.ssl_allow.allows_all() && !self.tls.as_ref().is_some_and(|t| t.verifies_clients)
        {
            return Err(format!(
                "brick {brick:?} serves only some certificate names (auth.ssl-allow) but this server does not ask clients for certificates: start weft brickd with --tls-ca"
            ));
        }
        Ok(policy)
    }

    /// Applies the options of `volfile` to bricks already served, while they keep serving
    /// (GlusterFS's brick reconfigure). Every `protocol/server` graph in it must be a brick
    /// served here, with the same shape as the served graph (translator names, types,
    /// subvolumes: [`Graph::shape_change`]); another shape is refused, to be applied by a
    /// detach and an attach. Everything is checked before anything changes, so a refusal
    /// changes nothing. Then each brick's translators whose options differ are
    /// reconfigured ([`Graph::reconfigure`]) and its access policy (`protocol/server`'s
    /// options) is swapped in: connected clients that the new policy refuses (by address,
    /// TLS, certificate name) are disconnected and their open files and locks released;
    /// the others keep their connections, open files and locks, and the squash options
    /// apply to their requests from then on (a new `grace-timeout`, to clients that
    /// disconnect from then on). A translator that cannot change an option while it runs
    /// keeps its options and the request fails after the rest was applied, saying which
    /// (detach and attach the brick to apply them). Returns the bricks reconfigured.
    pub async fn reconfigure(&self, volfile: &str) -> Result<Vec<String>, String> {
        let vf = Volfile::parse(volfile).map_err(|e| format!("server volfile: {e}"))?;
        Graph::check(&vf, &self.registry).map_err(|e| format!("server volfile: {e}"))?;
        let servers: Vec<_> = vf
            .volumes
            .iter()
            .filter(|v| v.type_name == "protocol/server")
            .collect();
        if servers.is_empty() {
            return Err(
                "server volfile has no protocol/server volume: each brick graph must be topped by one"
                    .into(),
            );
        }
        let _one_at_a_time = self.reconfiguring.lock().await;
        // Everything is checked first: a refusal changes nothing.
        let mut plan: Vec<(Arc<Brick>, Volfile, Policy, Vec<String>)> = Vec::new();
        for s in &servers {
            let name = s.subvolumes[0].clone();
            if plan.iter().any(|(b, ..)| b.name == name) {
                return Err(format!("brick {name:?} appears twice in the volfile"));
            }
            let Some(brick) = self.brick(&name) else {
                return Err(format!(
                    "brick {name:?} is not served by this process ({}): attach it instead",
                    self.brick_list()
                ));
            };
            let sub = vf.subgraph(&s.name).expect("declared");
            if let Some(why) = brick.graph.shape_change(&sub) {
                return Err(format!(
                    "brick {name:?}: the graph changed shape ({why}); options alone can change in place: detach and attach the brick to apply it"
                ));
            }
            let policy = self.policy_of(&name, s)?;
            let changes = self.changes(&brick.graph, &sub)?;
            plan.push((brick, sub, policy, changes));
        }
        let mut names = Vec::new();
        let mut refused = Vec::new();
        for (brick, sub, policy, changes) in plan {
            let done = brick
                .graph
                .reconfigure(&sub, &self.registry)
                .await
                .map_err(|e| format!("brick {:?}: {e}", brick.name))?;
            let policy_changed = **brick.policy.borrow() != policy;
            for (x, keys, why) in &done.refused {
                refused.push(format!(
                    "brick {:?}: translator {x:?} keeps its options ({}): {why}",
                    brick.name,
                    keys.join(", ")
                ));
            }
            if changes.is_empty() {
                tracing::info!(brick = %brick.name, "brick reconfigured: no option changed");
            } else {
                tracing::info!(
                    brick = %brick.name,
                    policy_changed,
                    "brick reconfigured: {}",
                    changes.join("; ")
                );
            }
            // Connections see the swap and close if the new policy refuses them.
            brick.policy.send_replace(Arc::new(policy));
            names.push(brick.name.clone());
        }
        if refused.is_empty() {
            Ok(names)
        } else {
            for r in &refused {
                tracing::warn!("reconfigure: {r}");
            }
            Err(format!(
                "reconfigured {} but some options cannot change while the brick runs (detach and attach it to apply them): {}",
                names.join(", "),
                refused.join("; ")
            ))
        }
    }

    /// What applying `vf` to `graph` would change: one `TRANSLATOR: key=value, ...` per
    /// translator whose options differ; errs on options that do not validate.
    fn changes(&self, graph: &Graph, vf: &Volfile) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for v in &vf.volumes {
            let Some(t) = self.registry.get(&v.type_name) else {
                continue;
            };
            let given: Vec<(String, String)> = v
                .options
                .iter()
                .map(|o| (o.key.clone(), o.value.clone()))
                .collect();
            let new = Options::validate(t.options(), &given)
                .map_err(|(_, e)| format!("volume {:?} ({}): {e}", v.name, v.type_name))?;
            let Some(old) = graph.options_of(&v.name) else {
                continue;
            };
            let keys = old.changed_keys(&new);
            if !keys.is_empty() {
                let kv: Vec<String> = keys
                    .iter()
                    .map(|k| match v.options.iter().rev().find(|o| &o.key == k) {
                        Some(o) => format!("{k}={}", o.value),
                        None => format!("{k} (default)"),
                    })
                    .collect();
                out.push(format!("{}: {}", v.name, kv.join(", ")));
            }
        }
        Ok(out)
    }

    /// Stops serving `brick`: its clients are disconnected (their fds released, their locks
    /// dropped, nothing kept for a reconnect) and its graph torn down. Other bricks are
    /// untouched.
    pub async fn detach(&self, brick: &str) -> Result<(), String> {
        let removed = self.bricks.write().remove(brick);
        let Some(b) = removed else {
            return Err(format!(
                "no brick named {brick:?} here ({})",
                self.brick_list()
            ));
        };
        b.detached.send_replace(true);
        // Connections hold the brick until they have released everything.
        for _ in 0..500 {
            if b.clients.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Clients kept for their grace period get nothing back from a detached brick.
        sessions::release_all_parked(&b).await;
        b.graph.fini().await;
        tracing::info!(brick, "brick detached");
        Ok(())
    }

    /// One line per brick: name and connected clients, and ` parked=N` when N
    /// disconnected clients are kept for their grace period.
    pub fn status(&self) -> String {
        let map = self.bricks.read();
        if map.is_empty() {
            return "no bricks\n".into();
        }
        map.values()
            .map(|b| {
                let parked = match b.sessions.parked() {
                    0 => String::new(),
                    n => format!(" parked={n}"),
                };
                format!(
                    "{} clients={}{parked}\n",
                    b.name,
                    b.clients.load(Ordering::Relaxed)
                )
            })
            .collect()
    }

    /// The limits this server applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connections and open files now, over every brick, beside their limits: one line.
    pub fn usage(&self) -> String {
        format!(
            "connections={}/{} open_fds={}/{}\n",
            self.counters.connections(),
            self.limits.max_connections,
            self.counters.open_fds(),
            self.limits.max_fds
        )
    }

    /// A statedump of the server (connections, open fds) and of every brick graph.
    pub fn statedump(&self) -> String {
        let mut out = format!("=== server ===\n{}", self.usage());
        for b in self.bricks.read().values() {
            out.push_str(&format!(
                "=== brick {} ===\nupcall_clients={}\n{}{}",
                b.name,
                b.upcalls.len(),
                b.sessions.dump(),
                b.graph.statedump()
            ));
        }
        out
    }

    fn brick_list(&self) -> String {
        let names: Vec<String> = self.bricks.read().keys().cloned().collect();
        if names.is_empty() {
            "this server has no bricks".into()
        } else {
            format!("bricks here: {}", names.join(", "))
        }
    }

    fn brick(&self, name: &str) -> Option<Arc<Brick>> {
        self.bricks.read().get(name).cloned()
    }

    /// Accepts connections on `listener` until the task is dropped; each connection is
    /// served on its own task and a failure ends only that connection. A connection over
    /// the connection limits is refused (with a reason when the peer sends a handshake);
    /// when the process is out of descriptors, accepting goes on: a spare descriptor kept
    /// for that lets the waiting connection be taken and closed at once, and accepting
    /// resumes when descriptors are free again.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut spare = spare_fd();
        let refusers = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING));
        loop {
            match listener.accept().await {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    match self.counters.admit(peer.ip(), &self.limits) {
                        Ok(slot) => {
                            let me = self.clone();
                            tokio::spawn(async move { conn::serve(me, sock, peer, slot).await });
                        }
                        Err(why) => {
                            let kind = if why.contains("per address") {
                                "connections-per-addr"
                            } else {
                                "connections"
                            };
                            self.counters.log.hit(
                                kind,
                                |n| tracing::warn!(%peer, "refusing connection: {why}{}", more(n)),
                            );
                            if let Ok(permit) = refusers.clone().try_acquire_owned() {
                                tokio::spawn(async move {
                                    conn::refuse_early(sock, why).await;
                                    drop(permit);
                                });
                            }
                        }
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: give the spare one up to take the connection that
                    // waits (so its peer hears at once rather than hang in the backlog),
                    // close it, and take the spare again once descriptors are free.
                    drop(spare.take());
                    let taken = tokio::time::timeout(
                        std::time::Duration::from_millis(10),
                        listener.accept(),
                    )
                    .await;
                    let who = match taken {
                        Ok(Ok((_, peer))) => format!(" (closed the connection from {peer})"),
                        _ => String::new(),
                    };
                    self.counters.log.hit("accept-emfile", |n| {
                        tracing::warn!(
                            "accept failed: {e}: the process is out of file descriptors{who}; accepting again in 100 ms{}",
                            more(n)
                        )
                    });
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    spare = spare_fd();
                }
                Err(e) => {
                    self.counters.log.hit("accept", |n| {
                        tracing::warn!("accept failed: {e}; accepting again in 100 ms{}", more(n))
                    });
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    if spare.is_none() {
                        spare = spare_fd();
                    }
                }
            }
        }
    }

    /// Detaches every brick (at shutdown).
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.bricks.read().keys().cloned().collect();
        for n in names {
            let _ = self.detach(&n).await;
        }
    }
}

/// Connections over a limit being told why at once; beyond this many, they are closed
/// without a word.
const MAX_REFUSING: usize = 64;

/// A descriptor held in reserve for when the process runs out (see [`BrickServer::serve`]).
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Registers `protocol/server` and `protocol/client` in `r`.
pub fn register(r: &mut Registry) {
    r.register(Arc::new(ServerType));
    r.register(Arc::new(crate::client::ClientType));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(given: &[(&str, &str)]) -> Result<Policy, String> {
        let given: Vec<(String, String)> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let o = Options::validate(SERVER_OPTIONS, &given).map_err(|(_, e)| e)?;
        Policy::from_options(&o)
    }

    #[test]
    fn identity_options() {
        let p = policy(&[]).unwrap();
        assert_eq!(p.squash, Squash::default());
        assert!(!p.squash.is_on() && p.ssl_allow.allows_all());
        let p = policy(&[
            ("server.root-squash", "on"),
            ("server.anonuid", "4294967294"),
            ("server.anongid", "0"),
        ])
        .unwrap();
        assert!(p.squash.root && !p.squash.all);
        assert_eq!((p.squash.anonuid, p.squash.anongid), (u32::MAX - 1, 0));
        for bad in ["4294967295", "-1", "x"] {
            assert!(policy(&[("server.anonuid", bad)]).is_err(), "{bad}");
        }
        let e = policy(&[("auth.ssl-allow", "alice")]).unwrap_err();
        assert!(e.contains("needs transport.socket.ssl-enabled on"), "{e}");
        assert!(policy(&[
            ("auth.ssl-allow", "alice"),
            ("transport.socket.ssl-enabled", "on")
        ])
        .is_ok());
        // `*` is the default and needs no TLS.
        assert!(policy(&[("auth.ssl-allow", "*")]).is_ok());
    }

    #[test]
    fn grace_timeout() {
        use std::time::Duration;
        assert_eq!(policy(&[]).unwrap().grace, Duration::from_secs(10));
        assert_eq!(
            policy(&[("grace-timeout", "0")]).unwrap().grace,
            Duration::ZERO
        );
        assert_eq!(
            policy(&[("grace-timeout", "1.5")]).unwrap().grace,
            Duration::from_millis(1500)
        );
        assert!(policy(&[("grace-timeout", "1800")]).is_ok());
        let e = policy(&[("grace-timeout", "1801")]).unwrap_err();
        assert!(e.contains("grace-timeout"), "{e}");
        assert!(policy(&[("grace-timeout", "soon")]).is_err());
    }
}
