//! `weft mgmtd`, and the GlusterFS-style admin commands (`peer`, `pool`, `volume`,
//! `system getspec`) that talk to a mgmtd over its REST API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use weft_mgmt::client::Api;
use weft_mgmt::tasks::{StartTaskRequest, TaskRecord, TaskState, ThrottleRequest};
use weft_mgmt::types::*;

/// `weft mgmtd`.
#[derive(Args, Debug)]
pub struct MgmtdArgs {
    /// HOST[:PORT] to serve on; peers and clients reach this node by HOST [default port:
    /// 24100].
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST[:PORT]")]
    listen: String,
    /// Where the node keeps its state (store, token, brick process files, logs).
    #[arg(long, default_value = "/var/lib/weft", value_name = "DIR")]
    workdir: PathBuf,
    /// The port of this node's brick process [default: mgmtd's port + 1].
    #[arg(long, value_name = "PORT")]
    brick_port: Option<u16>,
    /// Write the process id here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info,openraft=warn")]
    log_level: String,
    /// Claim at most this op-version (to run beside older peers) [default: this build's].
    #[arg(long, value_name = "N", hide = true)]
    max_op_version: Option<u32>,
}

/// Runs `weft mgmtd`.
pub fn mgmtd(a: MgmtdArgs) -> Result<()> {
    crate::mount::init_logging(&a.log_level)?;
    let (host, port) = weft_mgmt::node::split_host_port(&a.listen, weft_core::MGMT_PORT)
        .map_err(|e| anyhow!("--listen: {e}"))?;
    let brick_port = match a.brick_port {
        Some(p) => p,
        None => port
            .checked_add(1)
            .context("--listen port 65535 leaves no brick port; give --brick-port")?,
    };
    let cfg = weft_mgmt::daemon::Config {
        host,
        port,
        brick_port,
        workdir: a.workdir,
        exe: std::env::current_exe().context("cannot find the weft executable")?,
        max_op_version: a.max_op_version.unwrap_or(weft_mgmt::model::OP_VERSION),
        pid_file: a.pid_file,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(weft_mgmt::daemon::run(
        cfg,
        Arc::new(crate::registry::registry()),
    ))
    .map_err(|e| anyhow!(e))
}

/// Where the admin commands send their requests.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The mgmtd to ask: HOST[:PORT] [default: $WEFT_MGMT, else 127.0.0.1:24100].
    #[arg(long, global = true, value_name = "HOST[:PORT]")]
    remote_host: Option<String>,
    /// Print JSON (the shapes in docs/MANAGEMENT.md) instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl Target {
    fn api(&self, timeout: Duration) -> Result<Api> {
        let spec = self
            .remote_host
            .clone()
            .or_else(|| std::env::var("WEFT_MGMT").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "127.0.0.1".into());
        let (h, p) = weft_mgmt::node::split_host_port(&spec, weft_core::MGMT_PORT)
            .map_err(|e| anyhow!("--remote-host: {e}"))?;
        Ok(Api::new(&format!("http://{h}:{p}"), token()?, timeout))
    }
}

/// The pool token: $WEFT_TOKEN, else the file $WEFT_TOKEN_FILE, else
/// /var/lib/weft/token when readable.
fn token() -> Result<Option<String>> {
    if let Ok(t) = std::env::var("WEFT_TOKEN") {
        return Ok(Some(t.trim().to_string()));
    }
    if let Ok(f) = std::env::var("WEFT_TOKEN_FILE") {
        let t = std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read WEFT_TOKEN_FILE {f}"))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::fs::read_to_string("/var/lib/weft/token")
        .ok()
        .map(|t| t.trim().to_string()))
}

fn block<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `weft peer ...`.
#[derive(Subcommand, Debug)]
pub enum PeerCmd {
    /// Add a node to the pool: HOST[:PORT] of its mgmtd.
    Probe {
        /// The node.
        host: String,
    },
    /// Remove a node from the pool (`force`: also when it is down).
    Detach {
        /// The node.
        host: String,
        /// `force`.
        force: Option<String>,
    },
    /// The other nodes of the pool and whether they answer.
    Status,
}

/// `weft peer`.
pub fn peer(cmd: PeerCmd, t: Target) -> Result<()> {
    block(async move {
        let api = t.api(Duration::from_secs(60))?;
        match cmd {
            PeerCmd::Probe { host } => {
                let d: Done = api.post("/v1/peers", &ProbeRequest { host }).await?;
                println!("{}", d.message);
            }
            PeerCmd::Detach { host, force } => {
                let force = match force.as_deref() {
                    None => false,
                    Some("force") => true,
                    Some(o) => bail!("peer detach HOST [force]: {o:?} is not `force`"),
                };
                let d: Done = api
                    .delete(&format!("/v1/peers/{}?force={force}", urlencode(&host)))
                    .await?;
                println!("{}", d.message);
            }
            PeerCmd::Status => {
                let peers: Vec<PeerInfo> = api.get("/v1/peers").await?;
                if t.json {
                    return print_json(&peers);
                }
                let others: Vec<&PeerInfo> = peers.iter().filter(|p| !p.local).collect();
                println!("Number of Peers: {}", others.len());
                for p in others {
                    println!();
                    println!("Hostname: {}", p.host);
                    println!("Uuid: {}", p.uuid);
                    println!("State: Peer in Cluster ({})", p.state);
                }
            }
        }
        Ok(())
    })
}

/// `weft pool list`.
pub fn pool_list(t: Target) -> Result<()> {
    block(async move {
        let api = t.api(Duration::from_secs(30))?;
        let peers: Vec<PeerInfo> = api.get("/v1/peers").await?;
        if t.json {
            return print_json(&peers);
        }
        println!("{:<38}{:<24}State", "UUID", "Hostname");
        for p in peers {
            let host = if p.local {
                "localhost".to_string()
            } else {
                p.host.clone()
            };
            println!("{:<38}{:<24}{}", p.uuid, host, p.state);
        }
        Ok(())
    })
}

/// `weft system getspec VOL`: prints the client volfile.
pub fn getspec(vol: String, t: Target) -> Result<()> {
    block(async move {
        let api = t.api(Duration::from_secs(30))?;
        let a: VolfileAnswer = api
            .get(&format!("/v1/volumes/{}/volfile", urlencode(&vol)))
            .await?;
        if t.json {
            return print_json(&a);
        }
        print!("{}", a.volfile);
        if !a.volfile.ends_with('\n') {
            println!();
        }
        Ok(())
    })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const VOLUME_USAGE: &str = "\
usage:
  weft volume create NAME [replica N [arbiter 1]] [disperse N [redundancy M]] HOST:/BRICK... [force]
  weft volume start NAME [force] | stop NAME | delete NAME
  weft volume info [NAME|all] | status [NAME|all] | list
  weft volume set NAME KEY VALUE [KEY VALUE...] | set help
  weft volume get NAME KEY|all | reset NAME [KEY]
  weft volume statedump NAME | profile NAME start|info|stop
  weft volume add-brick NAME HOST:/BRICK... [force]
  weft volume rebalance NAME fix-layout start | start | status [--watch] | stop | pause | resume
  weft volume remove-brick NAME HOST:/BRICK... start | status | stop | commit [force]
  weft volume heal NAME [full] [--watch] | status | info [summary|split-brain]
  weft volume heal NAME split-brain bigger-file FILE | latest-mtime FILE | source-brick HOST:/BRICK [FILE]
  weft volume replace-brick NAME HOST:/OLD HOST:/NEW commit force
  weft volume task list | status ID [--watch] | start KIND [key=value...] [throttle N]
  weft volume task pause ID | resume ID | stop ID | throttle ID N
every read command takes --json; --remote-host HOST[:PORT] picks the mgmtd";

/// `weft volume ARGS...` with GlusterFS's grammar.
pub fn volume(args: Vec<String>, mut t: Target) -> Result<()> {
    // The grammar is positional, so the global flags may sit among the words.
    let mut words = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--json" {
            t.json = true;
        } else if a == "--remote-host" {
            t.remote_host = Some(
                it.next()
                    .ok_or_else(|| anyhow!("--remote-host needs HOST[:PORT]"))?,
            );
        } else if let Some(h) = a.strip_prefix("--remote-host=") {
            t.remote_host = Some(h.to_string());
        } else {
            words.push(a);
        }
    }
    let args = words;
    let Some((verb, rest)) = args.split_first() else {
        bail!("{VOLUME_USAGE}");
    };
    let rest: Vec<String> = rest.to_vec();
    block(async move {
        let api = t.api(Duration::from_secs(120))?;
        let one = |what: &str| -> Result<String> {
            match rest.as_slice() {
                [n] => Ok(n.clone()),
                _ => bail!("usage: weft volume {what} NAME"),
            }
        };
        match verb.as_str() {
            "create" => create(&api, &rest).await,
            "start" => {
                let (name, force) = name_force(&rest, "start")?;
                done(
                    api.post(
                        &format!("/v1/volumes/{}/start", urlencode(&name)),
                        &StartRequest { force },
                    )
                    .await?,
                )
            }
            "stop" => {
                let (name, _force) = name_force(&rest, "stop")?;
                done(
                    api.post(&format!("/v1/volumes/{}/stop", urlencode(&name)), &())
                        .await?,
                )
            }
            "delete" => done(
                api.delete(&format!("/v1/volumes/{}", urlencode(&one("delete")?)))
                    .await?,
            ),
            "list" => {
                let v: Vec<VolumeInfo> = api.get("/v1/volumes").await?;
                if t.json {
                    return print_json(&v.iter().map(|v| &v.name).collect::<Vec<_>>());
                }
                if v.is_empty() {
                    println!("No volumes present in cluster");
                }
                for v in v {
                    println!("{}", v.name);
                }
                Ok(())
            }
            "info" => {
                let v: Vec<VolumeInfo> = match rest.as_slice() {
                    [] => api.get("/v1/volumes").await?,
                    [a] if a == "all" => api.get("/v1/volumes").await?,
                    [n] => vec![api.get(&format!("/v1/volumes/{}", urlencode(n))).await?],
                    _ => bail!("usage: weft volume info [NAME|all]"),
                };
                if t.json {
                    return print_json(&v);
                }
                if v.is_empty() {
                    println!("No volumes present");
                }
                for v in v {
                    print_info(&v);
                }
                Ok(())
            }
            "status" => {
                let names: Vec<String> = match rest.as_slice() {
                    [] => api
                        .get::<Vec<VolumeInfo>>("/v1/volumes")
                        .await?
                        .into_iter()
                        .map(|v| v.name)
                        .collect(),
                    [a] if a == "all" => api
                        .get::<Vec<VolumeInfo>>("/v1/volumes")
                        .await?
                        .into_iter()
                        .map(|v| v.name)
                        .collect(),
                    [n] => vec![n.clone()],
                    _ => bail!("usage: weft volume status [NAME|all]"),
                };
                let mut all = Vec::new();
                for n in names {
                    let s: VolumeStatusInfo = api
                        .get(&format!("/v1/volumes/{}/status", urlencode(&n)))
                        .await?;
                    all.push(s);
                }
                if t.json {
                    return if rest.len() == 1 && rest[0] != "all" {
                        print_json(&all[0])
                    } else {
                        print_json(&all)
                    };
                }
                for s in all {
                    print_status(&s);
                }
                Ok(())
            }
            "set" => match rest.as_slice() {
                [h] if h == "help" => {
                    let o: Vec<OptionInfo> = api.get("/v1/options").await?;
                    if t.json {
                        return print_json(&o);
                    }
                    for o in o {
                        println!("Option: {}", o.key);
                        println!("Default Value: {}", o.value);
                        println!("Description: {}", o.description);
                        println!(
                            "Graph: {} ({}), op-version {}",
                            o.side, o.translator, o.op_version
                        );
                        println!();
                    }
                    Ok(())
                }
                [name, kv @ ..] if !kv.is_empty() && kv.len() % 2 == 0 => {
                    let options: BTreeMap<String, String> =
                        kv.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
                    done(
                        api.put(
                            &format!("/v1/volumes/{}/options", urlencode(name)),
                            &SetOptionsRequest { options },
                        )
                        .await?,
                    )
                }
                _ => bail!(
                    "usage: weft volume set NAME KEY VALUE [KEY VALUE...] | weft volume set help"
                ),
            },
            "get" => {
                let (name, key) = match rest.as_slice() {
                    [n, k] => (n.clone(), k.clone()),
                    _ => bail!("usage: weft volume get NAME KEY|all"),
                };
                let o: Vec<OptionInfo> = api
                    .get(&format!(
                        "/v1/volumes/{}/options?key={}",
                        urlencode(&name),
                        urlencode(&key)
                    ))
                    .await?;
                if t.json {
                    return print_json(&o);
                }
                println!("{:<48}Value", "Option");
                println!("{:<48}-----", "------");
                for o in o {
                    println!("{:<48}{}", o.key, o.value);
                }
                Ok(())
            }
            "reset" => match rest.as_slice() {
                [n] => done(
                    api.delete(&format!("/v1/volumes/{}/options", urlencode(n)))
                        .await?,
                ),
                [n, f] if f == "force" => done(
                    api.delete(&format!("/v1/volumes/{}/options", urlencode(n)))
                        .await?,
                ),
                [n, k] | [n, k, _] => done(
                    api.delete(&format!(
                        "/v1/volumes/{}/options/{}",
                        urlencode(n),
                        urlencode(k)
                    ))
                    .await?,
                ),
                _ => bail!("usage: weft volume reset NAME [KEY]"),
            },
            "statedump" => {
                let name = match rest.as_slice() {
                    [n, ..] => n.clone(),
                    _ => bail!("usage: weft volume statedump NAME"),
                };
                let d: BTreeMap<String, String> = api
                    .get(&format!("/v1/volumes/{}/statedump", urlencode(&name)))
                    .await?;
                if t.json {
                    return print_json(&d);
                }
                for (brick, text) in d {
                    println!("Brick {brick}");
                    print!("{text}");
                    println!();
                }
                Ok(())
            }
            "profile" => {
                let (name, what) = match rest.as_slice() {
                    [n, w] => (n.clone(), w.as_str()),
                    _ => bail!("usage: weft volume profile NAME start|info|stop"),
                };
                let path = format!("/v1/volumes/{}/options", urlencode(&name));
                let set = |on: &str| SetOptionsRequest {
                    options: [
                        (
                            "diagnostics.latency-measurement".to_string(),
                            on.to_string(),
                        ),
                        ("diagnostics.count-fop-hits".to_string(), on.to_string()),
                    ]
                    .into(),
                };
                match what {
                    "start" => {
                        let _: Done = api.put(&path, &set("on")).await?;
                        println!("Starting volume profile on {name} has been successful");
                        Ok(())
                    }
                    "stop" => {
                        let _: Done = api.put(&path, &set("off")).await?;
                        println!("Stopping volume profile on {name} has been successful");
                        Ok(())
                    }
                    "info" => {
                        let d: BTreeMap<String, String> = api
                            .get(&format!("/v1/volumes/{}/statedump", urlencode(&name)))
                            .await?;
                        // Each brick's io-stats section: the translator named VOL-brickN.
                        let mut out = BTreeMap::new();
                        for (brick, text) in d {
                            let mut section = String::new();
                            let mut on = false;
                            for line in text.lines() {
                                if let Some(title) = line.strip_prefix('[') {
                                    let t = title.trim_end_matches(']');
                                    on = t
                                        .strip_prefix(&format!("{name}-brick"))
                                        .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()));
                                    continue;
                                }
                                if on {
                                    section.push_str(line);
                                    section.push('\n');
                                }
                            }
                            out.insert(brick, section);
                        }
                        if t.json {
                            return print_json(&out);
                        }
                        for (brick, s) in out {
                            println!("Brick: {brick}");
                            println!("{}", "-".repeat(7 + brick.len()));
                            print!("{s}");
                            println!();
                        }
                        Ok(())
                    }
                    other => bail!("volume profile: {other:?}: use start, info or stop"),
                }
            }
            "add-brick" => {
                let Some((name, words)) = rest.split_first() else {
                    bail!("usage: weft volume add-brick NAME HOST:/BRICK... [force]");
                };
                let mut req = AddBricksRequest {
                    bricks: Vec::new(),
                    force: false,
                };
                for (i, w) in words.iter().enumerate() {
                    if w == "force" && i == words.len() - 1 {
                        req.force = true;
                    } else if w.contains(":/") {
                        req.bricks.push(w.clone());
                    } else {
                        bail!("volume add-brick: {w:?} is not a HOST:/PATH brick (this version of Weft does not grow replicated or dispersed volumes, so it takes no replica/disperse count)");
                    }
                }
                done(
                    api.post(&format!("/v1/volumes/{}/bricks", urlencode(name)), &req)
                        .await?,
                )
            }
            "remove-brick" => remove_brick(&api, &rest, t.json).await,
            "rebalance" => rebalance(&api, &rest, t.json).await,
            "heal" => heal(&api, &rest, t.json).await,
            "replace-brick" => {
                const USAGE: &str =
                    "usage: weft volume replace-brick NAME HOST:/OLD HOST:/NEW commit force";
                let [name, old, new, commit, force] = rest.as_slice() else {
                    bail!("{USAGE}");
                };
                if commit != "commit" || force != "force" {
                    bail!("volume replace-brick: only `commit force` is supported (the new brick is filled by self-heal)\n{USAGE}");
                }
                for b in [old, new] {
                    if !b.contains(":/") {
                        bail!("volume replace-brick: {b:?} is not a HOST:/PATH brick\n{USAGE}");
                    }
                }
                let req = ReplaceBrickRequest {
                    old: old.clone(),
                    new: new.clone(),
                    force: false,
                };
                done(
                    api.post(
                        &format!("/v1/volumes/{}/replace-brick", urlencode(name)),
                        &req,
                    )
                    .await?,
                )
            }
            "task" => task(&api, &rest, t.json).await,
            "help" | "--help" | "-h" => {
                println!("{VOLUME_USAGE}");
                Ok(())
            }
            other => bail!("unknown volume command {other:?}\n{VOLUME_USAGE}"),
        }
    })
}

fn done(d: Done) -> Result<()> {
    println!("{}", d.message);
    Ok(())
}

fn name_force(rest: &[String], verb: &str) -> Result<(String, bool)> {
    match rest {
        [n] => Ok((n.clone(), false)),
        [n, f] if f == "force" => Ok((n.clone(), true)),
        _ => bail!("usage: weft volume {verb} NAME [force]"),
    }
}

fn positive(word: &str, v: Option<&String>) -> Result<u32> {
    let v = v.ok_or_else(|| anyhow!("volume create: {word} needs a count"))?;
    v.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow!("volume create: {word} {v:?}: not a positive count"))
}

async fn create(api: &Api, rest: &[String]) -> Result<()> {
    let Some((name, words)) = rest.split_first() else {
        bail!("usage: weft volume create NAME [replica N [arbiter 1]] [disperse N [redundancy M]] HOST:/BRICK... [force]");
    };
    let mut req = CreateVolumeRequest {
        name: name.clone(),
        ..Default::default()
    };
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        match w {
            "replica" => {
                req.replica = Some(positive(w, words.get(i + 1))?);
                i += 2;
            }
            "arbiter" => {
                if positive(w, words.get(i + 1))? != 1 {
                    bail!("volume create: arbiter takes 1");
                }
                req.arbiter = true;
                i += 2;
            }
            "disperse" => {
                req.disperse = Some(positive(w, words.get(i + 1))?);
                i += 2;
            }
            "redundancy" | "disperse-data" => {
                req.redundancy = Some(positive(w, words.get(i + 1))?);
                i += 2;
            }
            "transport" => {
                match words.get(i + 1).map(String::as_str) {
                    Some("tcp") => {}
                    other => bail!("volume create: transport {other:?}: only tcp is supported"),
                }
                i += 2;
            }
            "force" if i == words.len() - 1 => {
                req.force = true;
                i += 1;
            }
            b if b.contains(":/") => {
                req.bricks.push(b.to_string());
                i += 1;
            }
            other => bail!("volume create: {other:?} is neither an option nor a HOST:/PATH brick"),
        }
    }
    let d: Done = api.post("/v1/volumes", &req).await?;
    println!("{}", d.message);
    Ok(())
}

fn print_info(v: &VolumeInfo) {
    println!();
    println!("Volume Name: {}", v.name);
    println!("Type: {}", v.type_name);
    println!("Volume ID: {}", v.id);
    println!("Status: {}", v.status);
    if v.replica > 1 {
        // GlusterFS's form: sets x bricks per set (data + arbiter) = total.
        let per = if v.arbiter {
            format!("({} + 1)", v.replica - 1)
        } else {
            v.replica.to_string()
        };
        println!(
            "Number of Bricks: {} x {per} = {}",
            v.brick_count / v.replica as usize,
            v.brick_count
        );
    } else {
        println!("Number of Bricks: {}", v.brick_count);
    }
    println!("Transport-type: {}", v.transport);
    println!("Bricks:");
    for (i, b) in v.bricks.iter().enumerate() {
        let arbiter = v.arbiter && v.replica > 0 && (i + 1) % v.replica as usize == 0;
        let tag = if arbiter { " (arbiter)" } else { "" };
        println!("Brick{}: {}{tag}", i + 1, b.name);
    }
    if !v.options.is_empty() {
        println!("Options Reconfigured:");
        for (k, val) in &v.options {
            println!("{k}: {val}");
        }
    }
}

fn print_status(s: &VolumeStatusInfo) {
    println!("Status of volume: {} ({})", s.name, s.status);
    println!(
        "{:<48}{:<10}{:<8}{:<10}Clients",
        "Brick", "Port", "Online", "Pid"
    );
    println!("{}", "-".repeat(82));
    for b in &s.bricks {
        let port = if b.online {
            b.port.to_string()
        } else {
            "N/A".into()
        };
        let pid = if b.online {
            b.pid.to_string()
        } else {
            "N/A".into()
        };
        println!(
            "{:<48}{:<10}{:<8}{:<10}{}",
            format!("Brick {}", b.brick),
            port,
            if b.online { "Y" } else { "N" },
            pid,
            b.clients
        );
        if let Some(e) = &b.error {
            println!("    ({e})");
        }
    }
    for p in &s.brick_processes {
        if p.restarts > 0 {
            println!(
                "Brick process on {} was restarted {} time(s) by mgmtd",
                p.host, p.restarts
            );
        }
    }
    println!();
}

fn print_task(r: &TaskRecord) {
    let total = r
        .items_total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into());
    let eta = r
        .eta_secs
        .map(|s| format!("{s}s"))
        .unwrap_or_else(|| "-".into());
    println!(
        "{}  {:<10} {:<10} {}/{} items, {} bytes, {:.1}/s, {}s run, eta {}{}",
        r.id,
        r.kind,
        format!("{:?}", r.state).to_lowercase(),
        r.items_done,
        total,
        r.bytes_done,
        r.rate,
        r.run_secs,
        eta,
        r.error
            .as_deref()
            .map(|e| format!(" error: {e}"))
            .unwrap_or_default()
    );
}

async fn task(api: &Api, rest: &[String], json: bool) -> Result<()> {
    let id_path = |id: &str, verb: &str| format!("/v1/tasks/{}/{verb}", urlencode(id));
    match rest {
        [l] if l == "list" => {
            let t: Vec<TaskRecord> = api.get("/v1/tasks").await?;
            if json {
                return print_json(&t);
            }
            for r in &t {
                print_task(r);
            }
            Ok(())
        }
        [s, id, watch @ ..] if s == "status" => {
            let watch = match watch {
                [] => false,
                [w] if w == "--watch" || w == "watch" => true,
                _ => bail!("usage: weft volume task status ID [--watch]"),
            };
            if !watch {
                let r: TaskRecord = api.get(&format!("/v1/tasks/{}", urlencode(id))).await?;
                return if json {
                    print_json(&r)
                } else {
                    print_task(&r);
                    Ok(())
                };
            }
            watch_task(api, id).await
        }
        [s, kind, more @ ..] if s == "start" => {
            let mut params = serde_json::Map::new();
            let mut throttle = 0;
            let mut i = 0;
            while i < more.len() {
                if more[i] == "throttle" {
                    throttle = more
                        .get(i + 1)
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| anyhow!("throttle needs items per second"))?;
                    i += 2;
                    continue;
                }
                let Some((k, v)) = more[i].split_once('=') else {
                    bail!("task start: {:?} is not key=value", more[i]);
                };
                let v = v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::from(v));
                params.insert(k.to_string(), v);
                i += 1;
            }
            let r: TaskRecord = api
                .post(
                    "/v1/tasks",
                    &StartTaskRequest {
                        kind: kind.clone(),
                        volume: None,
                        params: serde_json::Value::Object(params),
                        throttle,
                    },
                )
                .await?;
            if json {
                return print_json(&r);
            }
            println!("task {} started", r.id);
            Ok(())
        }
        [verb, id] if matches!(verb.as_str(), "pause" | "resume" | "stop") => {
            let r: TaskRecord = api.post(&id_path(id, verb), &()).await?;
            if json {
                return print_json(&r);
            }
            print_task(&r);
            Ok(())
        }
        [verb, id, n] if verb == "throttle" => {
            let items_per_sec = n
                .parse()
                .map_err(|_| anyhow!("throttle {n:?}: not a number of items per second"))?;
            let r: TaskRecord = api
                .post(&id_path(id, "throttle"), &ThrottleRequest { items_per_sec })
                .await?;
            print_task(&r);
            Ok(())
        }
        _ => bail!("{VOLUME_USAGE}"),
    }
}

fn print_rebalance(s: &RebalanceStatus) {
    println!(
        "{:>20} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>12} {:>8} {:>6}",
        "Node", "scanned", "fixed", "moved", "skipped", "failed", "bytes", "status", "run", "eta"
    );
    for r in s.nodes.iter().chain(std::iter::once(&s.total)) {
        println!(
            "{:>20} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>12} {:>7}s {:>6}",
            r.node,
            r.scanned,
            r.fixed,
            r.moved,
            r.skipped,
            r.failed,
            r.bytes,
            r.state,
            r.run_secs,
            r.eta_secs
                .map(|e| format!("{e}s"))
                .unwrap_or_else(|| "-".into())
        );
        if let Some(e) = &r.error {
            println!("{:>20} error: {e}", "");
        }
    }
    println!("volume rebalance: {}: {}", s.volume, s.state);
}

/// `weft volume remove-brick NAME HOST:/BRICK... start [throttle N] | status [--json|--watch]
/// | stop | commit [force]`.
async fn remove_brick(api: &Api, rest: &[String], json: bool) -> Result<()> {
    const USAGE: &str = "usage: weft volume remove-brick NAME HOST:/BRICK... start [force | throttle N] | status [--json|--watch] | stop | commit [force]";
    let Some((name, words)) = rest.split_first() else {
        bail!("{USAGE}");
    };
    let split = words
        .iter()
        .position(|w| matches!(w.as_str(), "start" | "status" | "stop" | "commit"))
        .ok_or_else(|| anyhow!("{USAGE}"))?;
    let (bricks, action) = words.split_at(split);
    if bricks.is_empty() {
        bail!("volume remove-brick: name the bricks to remove\n{USAGE}");
    }
    if let Some(b) = bricks.iter().find(|b| !b.contains(":/")) {
        bail!("volume remove-brick: {b:?} is not a HOST:/PATH brick (this version of Weft does not shrink replicated volumes, so it takes no replica count)");
    }
    let action: Vec<&str> = action.iter().map(String::as_str).collect();
    let mut req = RemoveBricksRequest {
        action: action[0].to_string(),
        bricks: bricks.to_vec(),
        force: false,
        throttle: 0,
    };
    match action.as_slice() {
        ["status"] | ["status", "--watch" | "watch"] => {
            // Progress is the volume's rebalance status (the same tasks move the files).
            let mut args = vec![name.clone(), "status".to_string()];
            args.extend(action[1..].iter().map(|s| s.to_string()));
            return rebalance(api, &args, json).await;
        }
        ["start"] | ["stop"] | ["commit"] => {}
        ["commit", "force"] | ["start", "force"] => req.force = true,
        ["start", "throttle", n] => {
            req.throttle = n
                .parse()
                .map_err(|_| anyhow!("throttle {n:?}: not a number of files per second"))?;
        }
        _ => bail!("{USAGE}"),
    }
    done(
        api.post(
            &format!("/v1/volumes/{}/remove-brick", urlencode(name)),
            &req,
        )
        .await?,
    )
}

/// `weft volume rebalance NAME fix-layout start | start | status [--watch] | stop`.
async fn rebalance(api: &Api, rest: &[String], json: bool) -> Result<()> {
    const USAGE: &str = "usage: weft volume rebalance NAME fix-layout start | start [force | throttle N] | status [--json|--watch] | stop | pause | resume";
    let Some((name, words)) = rest.split_first() else {
        bail!("{USAGE}");
    };
    let base = format!("/v1/volumes/{}/rebalance", urlencode(name));
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["fix-layout", "start"] | ["start"] | ["start", "force"] => {
            let req = RebalanceRequest {
                fix_layout: words[0] == "fix-layout",
                throttle: 0,
                force: words.last() == Some(&"force"),
            };
            done(api.post(&base, &req).await?)
        }
        ["fix-layout", "start", "throttle", n] | ["start", "throttle", n] => {
            let throttle = n.parse().map_err(|_| {
                anyhow!(
                    "throttle {n:?}: not a number of directories (fix-layout) or files per second"
                )
            })?;
            done(
                api.post(
                    &base,
                    &RebalanceRequest {
                        fix_layout: words[0] == "fix-layout",
                        throttle,
                        force: false,
                    },
                )
                .await?,
            )
        }
        ["status"] => {
            let s: RebalanceStatus = api.get(&base).await?;
            if json {
                return print_json(&s);
            }
            print_rebalance(&s);
            Ok(())
        }
        ["status", w] if *w == "--watch" || *w == "watch" => watch_rebalance(api, &base).await,
        [a @ ("stop" | "pause" | "resume")] => done(api.post(&format!("{base}/{a}"), &()).await?),
        _ => bail!("{USAGE}"),
    }
}

/// `weft volume heal NAME [full] [--watch] | status | info [summary|split-brain] |
/// split-brain POLICY ...`.
async fn heal(api: &Api, rest: &[String], json: bool) -> Result<()> {
    const USAGE: &str = "usage: weft volume heal NAME [full] [--watch] | status | info [summary|split-brain] | split-brain bigger-file FILE | split-brain latest-mtime FILE | split-brain source-brick HOST:/BRICK [FILE]";
    let Some((name, words)) = rest.split_first() else {
        bail!("{USAGE}");
    };
    let base = format!("/v1/volumes/{}/heal", urlencode(name));
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let watch = words.iter().any(|w| *w == "--watch" || *w == "watch");
    let words: Vec<&str> = words
        .into_iter()
        .filter(|w| *w != "--watch" && *w != "watch")
        .collect();
    match words.as_slice() {
        [] | ["full"] => {
            let d: Done = api
                .post(
                    &base,
                    &HealRequest {
                        full: words.first() == Some(&"full"),
                        throttle: 0,
                    },
                )
                .await?;
            println!("{}", d.message);
            if watch {
                watch_heal(api, &base).await?;
            }
            Ok(())
        }
        ["status"] => {
            if watch {
                return watch_heal(api, &base).await;
            }
            let ts: Vec<TaskRecord> = api.get(&base).await?;
            if json {
                return print_json(&ts);
            }
            if ts.is_empty() {
                println!("volume heal: {name}: no heal has run");
            }
            for t in ts {
                print_heal_task(&t);
            }
            Ok(())
        }
        ["info"] | ["info", "summary" | "split-brain"] => {
            let which = words.get(1).copied().unwrap_or("all");
            let i: weft_mgmt::heal::HealInfo =
                api.get(&format!("{base}/info?which={which}")).await?;
            if json {
                return print_json(&i);
            }
            for b in &i.bricks {
                println!("Brick {}", b.brick);
                println!("Status: {}", b.status);
                for e in &b.entries {
                    println!("{} - {}", e.gfid, e.status);
                }
                match which {
                    "summary" => {
                        println!("Total Number of entries: {}", b.pending);
                        println!(
                            "Number of entries in heal pending: {}",
                            b.pending - b.split_brain
                        );
                        println!("Number of entries in split-brain: {}", b.split_brain);
                    }
                    "split-brain" => {
                        println!("Number of entries in split-brain: {}", b.split_brain)
                    }
                    _ => println!("Number of entries: {}", b.pending),
                }
                println!();
            }
            Ok(())
        }
        ["split-brain", policy @ ("bigger-file" | "latest-mtime"), file] => done(
            api.post(
                &format!("{base}/split-brain"),
                &SplitBrainRequest {
                    policy: policy.to_string(),
                    file: Some(file.to_string()),
                    brick: None,
                },
            )
            .await?,
        ),
        ["split-brain", "source-brick", brick, file @ ..] if file.len() <= 1 => done(
            api.post(
                &format!("{base}/split-brain"),
                &SplitBrainRequest {
                    policy: "source-brick".into(),
                    file: file.first().map(|f| f.to_string()),
                    brick: Some(brick.to_string()),
                },
            )
            .await?,
        ),
        _ => bail!("{USAGE}"),
    }
}

fn print_heal_task(t: &TaskRecord) {
    let c = &t.checkpoint;
    println!(
        "{}: task {} {:?}: healed {}, split-brain {}, failed {}, crawled {}, {:.1}/s, {}s{}",
        t.node,
        t.id,
        t.state,
        c["healed"].as_u64().unwrap_or(0),
        c["split_brain"].as_u64().unwrap_or(0),
        c["failed"].as_u64().unwrap_or(0),
        c["crawled"].as_u64().unwrap_or(0),
        t.rate,
        t.run_secs,
        t.eta_secs.map_or(String::new(), |e| format!(", eta {e}s"))
    );
}

/// `heal NAME --watch`: a live bar per node's heal task (entries healed of those its
/// indexes listed) until every one ends.
async fn watch_heal(api: &Api, base: &str) -> Result<()> {
    let multi = indicatif::MultiProgress::new();
    let style =
        indicatif::ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
    let mut bars: BTreeMap<String, indicatif::ProgressBar> = BTreeMap::new();
    loop {
        let ts: Vec<TaskRecord> = api.get(base).await?;
        for t in &ts {
            let bar = bars.entry(t.node.clone()).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(t.node.clone());
                b
            });
            bar.set_length(t.items_total.unwrap_or(t.items_done).max(t.items_done));
            bar.set_position(t.items_done);
            bar.set_message(format!(
                "{:?}: split-brain {}, {:.1}/s, eta {}",
                t.state,
                t.checkpoint["split_brain"].as_u64().unwrap_or(0),
                t.rate,
                t.eta_secs.map_or("-".into(), |e| format!("{e}s"))
            ));
        }
        if ts
            .iter()
            .all(|t| !matches!(t.state, TaskState::Running | TaskState::Paused))
        {
            for b in bars.values() {
                b.finish();
            }
            for t in &ts {
                print_heal_task(t);
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `rebalance NAME status --watch`: a live progress bar per node (files or directories
/// scanned of its estimate) and one for the total, until the rebalance ends; then the
/// status table.
async fn watch_rebalance(api: &Api, base: &str) -> Result<()> {
    let multi = indicatif::MultiProgress::new();
    let style =
        indicatif::ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
    let mut bars: BTreeMap<String, indicatif::ProgressBar> = BTreeMap::new();
    loop {
        let s: RebalanceStatus = api.get(base).await?;
        let mut total = s.total.clone();
        total.total = s.nodes.iter().map(|r| r.total).sum();
        for r in s.nodes.iter().chain(std::iter::once(&total)) {
            let bar = bars.entry(r.node.clone()).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(r.node.clone());
                b
            });
            bar.set_length(r.total.unwrap_or(r.scanned).max(r.scanned));
            bar.set_position(r.scanned);
            bar.set_message(format!(
                "{}: moved {}, skipped {}, failed {}, {} bytes, {}s, eta {}",
                r.state,
                r.moved,
                r.skipped,
                r.failed,
                r.bytes,
                r.run_secs,
                r.eta_secs.map_or("-".into(), |e| format!("{e}s"))
            ));
        }
        if s.state != "running" && s.state != "paused" {
            for b in bars.values() {
                b.finish();
            }
            print_rebalance(&s);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Draws a live progress bar of a task until it ends.
async fn watch_task(api: &Api, id: &str) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:12} [{bar:40}] {pos}/{len} items ({per_sec}, eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    loop {
        let r: TaskRecord = api.get(&format!("/v1/tasks/{}", urlencode(id))).await?;
        if let Some(t) = r.items_total {
            bar.set_length(t);
        }
        bar.set_position(r.items_done);
        bar.set_message(format!("{} {:?}", r.kind, r.state).to_lowercase());
        if r.state.is_final() {
            bar.finish();
            print_task(&r);
            if r.state == TaskState::Failed {
                bail!("task failed: {}", r.error.unwrap_or_default());
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
