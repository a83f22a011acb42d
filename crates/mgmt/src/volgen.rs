//! Volfile generation: the brick graphs and the client graph of a volume, from its layout
//! and options (through the option table), as text that `weft brickd` and `weft mount`
//! read. Generation is a pure function of the pool state, so every node generates the same
//! text for the same volume version.

use weft_core::volfile::{Volfile, VolumeDecl};

use crate::model::{Layout, PoolState, Volume};
use crate::optable::{self, Side, WRITE_BEHIND_ENABLE};

/// Why a volume cannot be turned into graphs.
#[derive(Debug, thiserror::Error)]
pub enum VolgenError {
    /// The layout needs a cluster translator this build does not have.
    #[error("{0}")]
    Unsupported(String),
    /// A brick's node is not in the pool.
    #[error("brick {0} is on a node that is not in the pool")]
    UnknownNode(String),
}

/// Refuses layouts that no cluster translator serves yet, saying so.
pub fn check_layout(layout: &Layout, _bricks: usize) -> Result<(), VolgenError> {
    match layout {
        Layout::Distribute => Ok(()),
        Layout::Replicate {
            arbiter: true,
            replica,
        } if *replica != 3 => Err(VolgenError::Unsupported(format!(
            "an arbiter needs replica 3 (two data bricks and the arbiter), not replica {replica}"
        ))),
        Layout::Replicate { .. } => Ok(()),
        Layout::Disperse { disperse, .. } => Err(VolgenError::Unsupported(format!(
            "disperse {disperse} needs cluster/disperse, which this version of Weft does not \
             have yet"
        ))),
    }
}

/// The options of `side` the volume sets, as (translator type, option, value).
fn side_options(
    v: &Volume,
    side: Side,
) -> impl Iterator<Item = (&'static str, &'static str, &str)> {
    v.options.iter().filter_map(move |(k, val)| {
        let o = optable::lookup(k).ok()?;
        (o.side == side).then_some((o.xlator, o.option, val.as_str()))
    })
}

fn with_options(mut d: VolumeDecl, v: &Volume, side: Side, xlator: &str) -> VolumeDecl {
    for (x, opt, val) in side_options(v, side) {
        if x == xlator {
            d = d.option(opt, val);
        }
    }
    d
}

/// Whether brick `index` of `v` is an arbiter: the last brick of each replica set of a
/// `replica 3 arbiter 1` volume.
pub fn is_arbiter(v: &Volume, index: usize) -> bool {
    match v.layout {
        Layout::Replicate {
            replica,
            arbiter: true,
        } => replica > 0 && index % replica as usize == replica as usize - 1,
        _ => false,
    }
}

/// The server volfile of brick `index`: posix (with features/arbiter above it on an
/// arbiter brick, which then keeps no file data), locks, index (the inodes with pending
/// replication changes), migrate (the brick half of a rebalance's file moves), upcall
/// (tells clients about other clients' changes, `features.cache-invalidation`, on by
/// default) and io-stats under protocol/server, the brick named [`Volume::brick_name`].
pub fn brick_volfile(v: &Volume, index: usize) -> String {
    let b = &v.bricks[index];
    let name = v.brick_name(index);
    let posix =
        VolumeDecl::new(&format!("{name}-posix"), "storage/posix").option("directory", &b.path);
    let mut volumes = vec![posix];
    if is_arbiter(v, index) {
        let below = volumes[0].name.clone();
        volumes.push(
            VolumeDecl::new(&format!("{name}-arbiter"), "features/arbiter")
                .subvolumes(std::slice::from_ref(&below)),
        );
    }
    let below = volumes.last().map(|d| d.name.clone()).unwrap_or_default();
    let locks = VolumeDecl::new(&format!("{name}-locks"), "features/locks")
        .subvolumes(std::slice::from_ref(&below));
    let index = VolumeDecl::new(&format!("{name}-index"), "features/index")
        .option("directory", &b.path)
        .subvolumes(std::slice::from_ref(&locks.name));
    let migrate = VolumeDecl::new(&format!("{name}-migrate"), "features/migrate")
        .subvolumes(std::slice::from_ref(&index.name));
    let mut upcall = with_options(
        VolumeDecl::new(&format!("{name}-upcall"), "features/upcall"),
        v,
        Side::Brick,
        "features/upcall",
    );
    if !v.options.contains_key("features.cache-invalidation") {
        // On unless set off (the translator's own default is off).
        upcall = upcall.option("cache-invalidation", "on");
    }
    let upcall = upcall.subvolumes(std::slice::from_ref(&migrate.name));
    let stats = with_options(
        VolumeDecl::new(&name, "debug/io-stats"),
        v,
        Side::Brick,
        "debug/io-stats",
    )
    .subvolumes(std::slice::from_ref(&upcall.name));
    let server = with_options(
        VolumeDecl::new(&format!("{name}-server"), "protocol/server"),
        v,
        Side::Brick,
        "protocol/server",
    )
    .subvolumes(std::slice::from_ref(&stats.name));
    volumes.extend([locks, index, migrate, upcall, stats, server]);
    Volfile { volumes }.to_string()
}

/// Groups the protocol/clients `below` (in brick order) into the volume's replica sets,
/// each under a cluster/replicate named `VOL-replicate-K` (K counts sets from 0) that
/// carries the volume's replicate options; returns the names distribute goes over (the
/// clients themselves when the volume is not replicated).
fn replica_sets(v: &Volume, below: Vec<String>, decls: &mut Vec<VolumeDecl>) -> Vec<String> {
    let Layout::Replicate { replica, arbiter } = v.layout else {
        return below;
    };
    let mut out = Vec::new();
    for (k, set) in below.chunks(replica.max(1) as usize).enumerate() {
        let mut d = with_options(
            VolumeDecl::new(&format!("{}-replicate-{k}", v.name), "cluster/replicate"),
            v,
            Side::Client,
            "cluster/replicate",
        )
        .subvolumes(set);
        if arbiter {
            d = d.option("arbiter-count", "1");
        }
        out.push(d.name.clone());
        decls.push(d);
    }
    out
}

/// cluster/distribute over `below` (the volume's protocol/clients, in brick order), told
/// which bricks are being removed.
fn dht_decl(v: &Volume, below: &[String]) -> VolumeDecl {
    let d = VolumeDecl::new(&format!("{}-dht", v.name), "cluster/distribute").subvolumes(below);
    if v.removing.is_empty() {
        return d;
    }
    let names: Vec<&str> = v
        .removing
        .iter()
        .filter_map(|&i| below.get(i).map(String::as_str))
        .collect();
    d.option("decommissioned", names.join(","))
}

/// The graph a rebalance task reaches the volume through: the volume's protocol/clients
/// (the same names as in the client volfile, which link files record), the replica sets
/// over them, under cluster/distribute, which is the top. `None` for a volume of one
/// brick or one replica set.
pub fn rebalance_volfile(state: &PoolState, v: &Volume) -> Result<Option<String>, VolgenError> {
    let (mut decls, below) = cluster_decls(state, v)?;
    if below.len() < 2 {
        return Ok(None);
    }
    decls.push(dht_decl(v, &below));
    Ok(Some(Volfile { volumes: decls }.to_string()))
}

/// The graph self-heal reaches a replicated volume through: its protocol/clients and
/// cluster/replicate sets (the same names as in the client volfile), under
/// cluster/distribute when there are several sets.
pub fn heal_volfile(state: &PoolState, v: &Volume) -> Result<String, VolgenError> {
    let (mut decls, below) = cluster_decls(state, v)?;
    if below.len() > 1 {
        decls.push(dht_decl(v, &below));
    }
    Ok(Volfile { volumes: decls }.to_string())
}

/// The protocol/clients of every brick and the replica sets over them; returns the
/// declarations and the names distribute would go over.
fn cluster_decls(
    state: &PoolState,
    v: &Volume,
) -> Result<(Vec<VolumeDecl>, Vec<String>), VolgenError> {
    check_layout(&v.layout, v.bricks.len())?;
    let mut decls = Vec::new();
    let mut below = Vec::new();
    for (i, b) in v.bricks.iter().enumerate() {
        let peer = state
            .peers
            .get(&b.node)
            .ok_or_else(|| VolgenError::UnknownNode(b.spec()))?;
        let d = VolumeDecl::new(&v.client_name(i), "protocol/client")
            .option("remote-host", &b.host)
            .option("remote-port", peer.brick_port)
            .option("remote-subvolume", v.brick_name(i));
        let d = with_options(d, v, Side::Client, "protocol/client");
        below.push(d.name.clone());
        decls.push(d);
    }
    let below = replica_sets(v, below, &mut decls);
    Ok((decls, below))
}

/// The client volfile: protocol/client to each brick (asking for upcalls when the volume
/// has `features.cache-invalidation` on), cluster/replicate over each replica set,
/// cluster/distribute over them when there are several, entry-behind (always present;
/// `performance.entry-behind` turns it off and on), write-behind (always present so
/// turning it off and on is an option change, not a new graph), read-ahead (always
/// present; `performance.read-ahead` turns it off and on), quick-read (with
/// open-behind) and md-cache above it (always present too; `performance.md-cache-timeout`
/// and `performance.qr-cache-timeout` default to 60 s with cache invalidation, 1 s
/// without), features/python when `python.module` is set, and io-stats on top named
/// after the volume.
pub fn client_volfile(state: &PoolState, v: &Volume) -> Result<String, VolgenError> {
    let (mut decls, mut below) = cluster_decls(state, v)?;
    let enable = v
        .options
        .get("performance.write-behind")
        .map(String::as_str)
        .unwrap_or("on");
    let wb = VolumeDecl::new(
        &format!("{}-write-behind", v.name),
        "performance/write-behind",
    )
    .option(WRITE_BEHIND_ENABLE, enable);
    let mut wb = wb;
    for (x, opt, val) in side_options(v, Side::Client) {
        if x == "performance/write-behind" && opt != WRITE_BEHIND_ENABLE {
            wb = wb.option(opt, val);
        }
    }
    // Several bricks or sets: cluster/distribute spreads files over them by name hash.
    if below.len() > 1 {
        let dht = dht_decl(v, &below);
        below = vec![dht.name.clone()];
        decls.push(dht);
    }
    let invalidation = optable::cache_invalidation(&v.options);
    if invalidation {
        for d in decls
            .iter_mut()
            .filter(|d| d.type_name == "protocol/client")
        {
            *d = d.clone().option("cache-invalidation", "on");
        }
    }
    // Under write-behind, so the writes it holds reach the bricks after the creates they
    // follow; leases are granted only to a client of one brick (the cluster translators
    // do not pass the request on), elsewhere it only passes FOPs on.
    let eb = with_options(
        VolumeDecl::new(
            &format!("{}-entry-behind", v.name),
            "performance/entry-behind",
        ),
        v,
        Side::Client,
        "performance/entry-behind",
    )
    .subvolumes(&below);
    below = vec![eb.name.clone()];
    decls.push(eb);
    decls.push(wb.clone().subvolumes(&below));
    let ra = with_options(
        VolumeDecl::new(&format!("{}-read-ahead", v.name), "performance/read-ahead"),
        v,
        Side::Client,
        "performance/read-ahead",
    )
    .subvolumes(std::slice::from_ref(&wb.name));
    decls.push(ra.clone());
    let qr = with_options(
        VolumeDecl::new(&format!("{}-quick-read", v.name), "performance/quick-read"),
        v,
        Side::Client,
        "performance/quick-read",
    );
    let qr = if v.options.contains_key("performance.qr-cache-timeout") {
        qr
    } else {
        qr.option(
            "cache-timeout",
            optable::md_cache_timeout_default(&v.options),
        )
    }
    .subvolumes(std::slice::from_ref(&ra.name));
    decls.push(qr.clone());
    let md = with_options(
        VolumeDecl::new(&format!("{}-md-cache", v.name), "performance/md-cache"),
        v,
        Side::Client,
        "performance/md-cache",
    );
    let md = if v.options.contains_key("performance.md-cache-timeout") {
        md
    } else {
        md.option(
            "md-cache-timeout",
            optable::md_cache_timeout_default(&v.options),
        )
    }
    .option(
        "cache-invalidation",
        if invalidation { "on" } else { "off" },
    )
    .subvolumes(std::slice::from_ref(&qr.name));
    let mut top_child = md.name.clone();
    decls.push(md);
    if v.options.contains_key("python.module") {
        let py = with_options(
            VolumeDecl::new(&format!("{}-python", v.name), "features/python"),
            v,
            Side::Client,
            "features/python",
        )
        .subvolumes(&[top_child.clone()]);
        top_child = py.name.clone();
        decls.push(py);
    }
    decls.push(VolumeDecl::new(&v.name, "debug/io-stats").subvolumes(&[top_child]));
    Ok(Volfile { volumes: decls }.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Brick, Peer, VolumeStatus};
    use std::collections::BTreeMap;

    fn state() -> (PoolState, Volume) {
        let mut s = PoolState::default();
        s.peers.insert(
            7,
            Peer {
                id: 7,
                uuid: "u".into(),
                host: "127.0.0.2".into(),
                mgmt_port: 24100,
                brick_port: 24101,
                max_op_version: 1,
            },
        );
        let v = Volume {
            removing: Vec::new(),
            name: "vol1".into(),
            id: "id".into(),
            layout: Layout::Distribute,
            bricks: vec![Brick {
                node: 7,
                host: "127.0.0.2".into(),
                path: "/srv/b1".into(),
                number: None,
            }],
            status: VolumeStatus::Created,
            options: BTreeMap::new(),
            version: 1,
        };
        (s, v)
    }

    fn opt<'a>(d: &'a VolumeDecl, key: &str) -> Option<&'a str> {
        d.options
            .iter()
            .find(|o| o.key == key)
            .map(|o| o.value.as_str())
    }

    #[test]
    fn caches_are_on_by_default_and_follow_cache_invalidation() {
        let (s, mut v) = state();
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        let md = vf.get("vol1-md-cache").unwrap();
        assert_eq!(md.type_name, "performance/md-cache");
        assert_eq!(md.subvolumes, vec!["vol1-quick-read".to_string()]);
        let qr = vf.get("vol1-quick-read").unwrap();
        assert_eq!(qr.subvolumes, vec!["vol1-read-ahead".to_string()]);
        let ra = vf.get("vol1-read-ahead").unwrap();
        assert_eq!(ra.type_name, "performance/read-ahead");
        assert_eq!(ra.subvolumes, vec!["vol1-write-behind".to_string()]);
        let wb = vf.get("vol1-write-behind").unwrap();
        assert_eq!(wb.subvolumes, vec!["vol1-entry-behind".to_string()]);
        let eb = vf.get("vol1-entry-behind").unwrap();
        assert_eq!(eb.type_name, "performance/entry-behind");
        assert_eq!(eb.subvolumes, vec![v.client_name(0)]);
        assert_eq!(opt(qr, "cache-timeout"), Some("60"));
        assert_eq!(
            vf.get("vol1").unwrap().subvolumes,
            vec!["vol1-md-cache".to_string()]
        );
        assert_eq!(opt(md, "cache-invalidation"), Some("on"));
        assert_eq!(opt(md, "md-cache-timeout"), Some("60"));
        let client = vf.get(&v.client_name(0)).unwrap();
        assert_eq!(opt(client, "cache-invalidation"), Some("on"));
        let bv = Volfile::parse(&brick_volfile(&v, 0)).unwrap();
        let up = bv.get(&format!("{}-upcall", v.brick_name(0))).unwrap();
        assert_eq!(up.type_name, "features/upcall");
        assert_eq!(opt(up, "cache-invalidation"), Some("on"));
        assert_eq!(
            bv.get(&v.brick_name(0)).unwrap().subvolumes,
            vec![up.name.clone()]
        );

        // Off: nobody tells the clients, so they cache for 1 s and ask for no upcalls.
        v.options
            .insert("features.cache-invalidation".into(), "off".into());
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        let md = vf.get("vol1-md-cache").unwrap();
        assert_eq!(opt(md, "cache-invalidation"), Some("off"));
        assert_eq!(opt(md, "md-cache-timeout"), Some("1"));
        assert_eq!(
            opt(vf.get(&v.client_name(0)).unwrap(), "cache-invalidation"),
            None
        );
        let bv = Volfile::parse(&brick_volfile(&v, 0)).unwrap();
        let up = bv.get(&format!("{}-upcall", v.brick_name(0))).unwrap();
        assert_eq!(opt(up, "cache-invalidation"), Some("off"));

        // A timeout set by hand is kept.
        v.options
            .insert("performance.md-cache-timeout".into(), "5".into());
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        assert_eq!(
            opt(vf.get("vol1-md-cache").unwrap(), "md-cache-timeout"),
            Some("5")
        );
    }

    #[test]
    fn client_graph_reaches_the_brick_by_name_and_port() {
        let (s, mut v) = state();
        v.options.insert("network.ping-timeout".into(), "5".into());
        v.options.insert("auth.allow".into(), "127.0.0.1".into());
        let text = client_volfile(&s, &v).unwrap();
        let vf = Volfile::parse(&text).unwrap();
        let c = vf.get("vol1-client-0").unwrap();
        let opts: BTreeMap<_, _> = c
            .options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(opts["remote-host"], "127.0.0.2");
        assert_eq!(opts["remote-port"], "24101");
        assert_eq!(opts["remote-subvolume"], "vol1-brick0");
        assert_eq!(opts["ping-timeout"], "5");
        assert!(
            !opts.contains_key("auth.allow"),
            "brick options stay out of the client graph"
        );
        assert_eq!(vf.volumes.last().unwrap().name, "vol1");
    }

    #[test]
    fn brick_graph_carries_server_options() {
        let (_, mut v) = state();
        v.options.insert("auth.allow".into(), "127.0.0.1".into());
        let vf = Volfile::parse(&brick_volfile(&v, 0)).unwrap();
        let top = vf.volumes.last().unwrap();
        assert_eq!(top.type_name, "protocol/server");
        assert_eq!(top.subvolumes, vec!["vol1-brick0".to_string()]);
        assert!(top
            .options
            .iter()
            .any(|o| o.key == "auth.allow" && o.value == "127.0.0.1"));
    }

    #[test]
    fn layouts_without_a_translator_are_refused_by_name() {
        let e = check_layout(
            &Layout::Disperse {
                disperse: 3,
                redundancy: 1,
            },
            3,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cluster/disperse"));
        let e = check_layout(
            &Layout::Replicate {
                replica: 2,
                arbiter: true,
            },
            2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("arbiter needs replica 3"));
        check_layout(
            &Layout::Replicate {
                replica: 3,
                arbiter: true,
            },
            3,
        )
        .unwrap();
        check_layout(&Layout::Distribute, 4).unwrap();
        check_layout(
            &Layout::Replicate {
                replica: 3,
                arbiter: false,
            },
            6,
        )
        .unwrap();
    }

    #[test]
    fn replica_sets_go_under_cluster_replicate_then_distribute() {
        let (s, mut v) = state();
        for i in 2..=6 {
            v.bricks.push(Brick {
                node: 7,
                host: "127.0.0.2".into(),
                path: format!("/srv/b{i}"),
                number: None,
            });
        }
        v.layout = Layout::Replicate {
            replica: 3,
            arbiter: false,
        };
        v.options
            .insert("cluster.quorum-type".into(), "fixed".into());
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        let r0 = vf.get("vol1-replicate-0").unwrap();
        assert_eq!(r0.type_name, "cluster/replicate");
        assert_eq!(
            r0.subvolumes,
            vec!["vol1-client-0", "vol1-client-1", "vol1-client-2"]
        );
        assert!(r0
            .options
            .iter()
            .any(|o| o.key == "quorum-type" && o.value == "fixed"));
        assert_eq!(
            vf.get("vol1-dht").unwrap().subvolumes,
            vec!["vol1-replicate-0", "vol1-replicate-1"]
        );
        // One set: no distribute.
        v.bricks.truncate(3);
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        assert!(vf.get("vol1-dht").is_none());
        assert_eq!(
            vf.get("vol1-entry-behind").unwrap().subvolumes,
            vec!["vol1-replicate-0"]
        );
        // Every brick graph keeps the index of pending changes.
        let b = Volfile::parse(&brick_volfile(&v, 1)).unwrap();
        assert_eq!(
            b.get("vol1-brick1-index").unwrap().type_name,
            "features/index"
        );
        assert!(b.get("vol1-brick1-arbiter").is_none());
    }

    #[test]
    fn arbiter_is_the_last_brick_of_each_set() {
        let (s, mut v) = state();
        for i in 2..=6 {
            v.bricks.push(Brick {
                node: 7,
                host: "127.0.0.2".into(),
                path: format!("/srv/b{i}"),
                number: None,
            });
        }
        v.layout = Layout::Replicate {
            replica: 3,
            arbiter: true,
        };
        let arbiters: Vec<usize> = (0..6).filter(|&i| is_arbiter(&v, i)).collect();
        assert_eq!(arbiters, vec![2, 5]);
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        for set in ["vol1-replicate-0", "vol1-replicate-1"] {
            assert!(vf
                .get(set)
                .unwrap()
                .options
                .iter()
                .any(|o| o.key == "arbiter-count" && o.value == "1"));
        }
        // The arbiter sits right above posix; data bricks have none.
        let b = Volfile::parse(&brick_volfile(&v, 5)).unwrap();
        let arb = b.get("vol1-brick5-arbiter").unwrap();
        assert_eq!(arb.type_name, "features/arbiter");
        assert_eq!(arb.subvolumes, vec!["vol1-brick5-posix"]);
        assert_eq!(
            b.get("vol1-brick5-locks").unwrap().subvolumes,
            vec!["vol1-brick5-arbiter"]
        );
        let b = Volfile::parse(&brick_volfile(&v, 4)).unwrap();
        assert!(b.get("vol1-brick4-arbiter").is_none());
        assert_eq!(
            b.get("vol1-brick4-locks").unwrap().subvolumes,
            vec!["vol1-brick4-posix"]
        );
    }

    #[test]
    fn several_bricks_go_under_cluster_distribute() {
        let (mut s, mut v) = state();
        s.peers.insert(
            8,
            Peer {
                id: 8,
                uuid: "u8".into(),
                host: "127.0.0.3".into(),
                mgmt_port: 24100,
                brick_port: 24101,
                max_op_version: 1,
            },
        );
        v.bricks.push(Brick {
            node: 8,
            host: "127.0.0.3".into(),
            path: "/srv/b2".into(),
            number: None,
        });
        let vf = Volfile::parse(&client_volfile(&s, &v).unwrap()).unwrap();
        let dht = vf.get("vol1-dht").unwrap();
        assert_eq!(dht.type_name, "cluster/distribute");
        assert_eq!(dht.subvolumes, vec!["vol1-client-0", "vol1-client-1"]);
        assert_eq!(
            vf.get("vol1-entry-behind").unwrap().subvolumes,
            vec!["vol1-dht"]
        );
    }
}
