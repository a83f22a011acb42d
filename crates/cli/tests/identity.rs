//! Who the client is, as the brick sees it: `server.root-squash`, `server.all-squash` and
//! `server.anonuid`/`server.anongid` rewrite the ids of requests before the brick runs them
//! (files are created with the squashed owner, the brick's access checks treat a squashed
//! root as the anonymous user), and `auth.ssl-allow` serves only the TLS clients whose
//! certificate name it lists, refusing the others with a reason the client shows.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// A (uid, gid) pair.
type Owner = (u32, u32);

/// (uid, gid) of `p` as the brick's own filesystem has it.
fn owner(p: &Path) -> Owner {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

/// Runs `argv` as uid `uid` and gid `gid`, with no supplementary groups.
fn run_as(uid: u32, gid: u32, argv: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// Creates `p` as uid:gid (open with O_CREAT, then close), failing the test with its
/// stderr. Not `touch`: it also sets the times, which the kernel lets only the owner or a
/// writer do, and an all-squashed user owns nothing.
fn touch_as(uid: u32, gid: u32, p: &Path) {
    let out = run_as(
        uid,
        gid,
        &["sh", "-c", ": > \"$1\"", "sh", p.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "touch {} as {uid}:{gid}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A folder for one test: bricks under `bricks/`, mountpoints under `mnt/`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        Setup { dir: scratch(tag) }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A brick directory with a `shared` folder anyone may write to (created on the brick
    /// itself, before Weft sees it: posix adopts it at its first lookup).
    fn brick(&self, name: &str) -> PathBuf {
        let b = self.path(&format!("bricks/{name}"));
        std::fs::create_dir_all(b.join("shared")).unwrap();
        std::fs::set_permissions(b.join("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
        b
    }

    /// Mounts brick `brick` of the brickd on `port` with client options `extra`.
    fn mount(&self, brick: &str, port: u16, extra: &[(&str, &str)]) -> MountGuard {
        let mnt = self.path(&format!("mnt/{brick}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let cv = self.path(&format!("{brick}.vol"));
        std::fs::write(&cv, client_volfile(brick, port, extra)).unwrap();
        mount_volfile(&cv, &mnt, &self.path(&format!("{brick}-mount.log")), &[])
    }

    /// Runs `weft mount` in the foreground for brick `brick` and returns how it ended (a
    /// refused mount exits at once).
    fn try_mount(&self, name: &str, brick: &str, port: u16, extra: &[(&str, &str)]) -> Output {
        let mnt = self.path(&format!("mnt/{name}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let cv = self.path(&format!("{name}.vol"));
        std::fs::write(&cv, client_volfile(brick, port, extra)).unwrap();
        let out = weft()
            .args(["mount", "--foreground", "--volfile"])
            .arg(&cv)
            .arg(&mnt)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!is_mounted(&mnt), "{name}: the refused mount is mounted");
        out
    }
}

#[test]
fn squashing_gives_files_created_through_a_mount_the_anonymous_owner_on_the_brick() {
    let s = Setup::new("id-squash");
    let (plain, rsq, asq) = (s.brick("plain"), s.brick("rsq"), s.brick("asq"));
    let vf = s.path("server.vol");
    std::fs::write(
        &vf,
        [
            brick_graph("plain", &plain, &[]),
            brick_graph("rsq", &rsq, &[("server.root-squash", "on")]),
            brick_graph(
                "asq",
                &asq,
                &[
                    ("server.all-squash", "on"),
                    ("server.anonuid", "4321"),
                    ("server.anongid", "4322"),
                ],
            ),
        ]
        .concat(),
    )
    .unwrap();
    let bd = Brickd::start(s.dir.path(), &vf, &[]);

    // What each brick should record for: root (0:0), a user (1000:1000), and a user whose
    // group is root's (1000:0).
    let cases: [(&str, &Path, [Owner; 3]); 3] = [
        ("plain", &plain, [(0, 0), (1000, 1000), (1000, 0)]),
        ("rsq", &rsq, [(65534, 65534), (1000, 1000), (1000, 65534)]),
        ("asq", &asq, [(4321, 4322), (4321, 4322), (4321, 4322)]),
    ];
    for (name, brick, [root, user, user_gid0]) in cases {
        let m = s.mount(name, bd.port, &[]);
        // As root: a file, a folder, a symlink.
        std::fs::write(m.mnt.join("by-root"), b"x").unwrap();
        std::fs::create_dir(m.mnt.join("dir-by-root")).unwrap();
        std::os::unix::fs::symlink("by-root", m.mnt.join("link-by-root")).unwrap();
        for f in ["by-root", "dir-by-root", "link-by-root"] {
            assert_eq!(owner(&brick.join(f)), root, "{name}: {f} on the brick");
        }
        // The mount shows the owner the brick recorded.
        assert_eq!(
            owner(&m.mnt.join("by-root")),
            root,
            "{name}: by-root on the mount"
        );
        // Root can still use what it made (the kernel checks root's permissions).
        assert_eq!(std::fs::read(m.mnt.join("by-root")).unwrap(), b"x");

        touch_as(1000, 1000, &m.mnt.join("shared/by-user"));
        assert_eq!(
            owner(&brick.join("shared/by-user")),
            user,
            "{name}: by-user"
        );
        touch_as(1000, 0, &m.mnt.join("shared/by-user-gid0"));
        assert_eq!(
            owner(&brick.join("shared/by-user-gid0")),
            user_gid0,
            "{name}: by-user-gid0"
        );
        let out = run_as(
            1000,
            1000,
            &["mkdir", m.mnt.join("shared/dir").to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            owner(&brick.join("shared/dir")),
            user,
            "{name}: mkdir by user"
        );
    }
}

#[test]
fn the_brick_checks_a_squashed_root_as_the_anonymous_user() {
    use weft_core::{Ctx, Xdata};
    let s = Setup::new("id-access");
    let (plain, rsq) = (s.brick("plain"), s.brick("rsq"));
    // On each brick: a 0600 file of user 1000, and a 0644 file of root.
    for b in [&plain, &rsq] {
        let secret = b.join("secret");
        std::fs::write(&secret, b"s").unwrap();
        std::os::unix::fs::chown(&secret, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mine = b.join("roots");
        std::fs::write(&mine, b"r").unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let vf = s.path("server.vol");
    std::fs::write(
        &vf,
        [
            brick_graph("plain", &plain, &[]),
            brick_graph("rsq", &rsq, &[("server.root-squash", "on")]),
        ]
        .concat(),
    )
    .unwrap();
    let bd = Brickd::start(s.dir.path(), &vf, &[]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // access(2) through the brick, as root (uid 0, gid 0): Ok or the errno.
        let access = |brick: &'static str, path: &'static str, mask: i32| {
            let port = bd.port;
            async move {
                let mut reg = weft_core::Registry::new();
                weft_protocol::register(&mut reg);
                let vol = weft_client::Volume::from_volfile(
                    &client_volfile(brick, port, &[]),
                    reg,
                    weft_client::OpenOptions::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("open {brick}: {e}"));
                let (loc, _) = vol.lookup(path).await.expect("lookup");
                let r = vol
                    .top()
                    .access(&Ctx::internal(), &loc, mask as u32, Xdata::new())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.0);
                vol.close().await;
                r
            }
        };
        // Root as itself passes the mode bits.
        assert_eq!(access("plain", "/secret", libc::R_OK).await, Ok(()));
        assert_eq!(access("plain", "/roots", libc::W_OK).await, Ok(()));
        // Squashed, it is user 65534: another user's 0600 file and root's 0644 file are not
        // its to read or write; root's file is still readable by others.
        assert_eq!(
            access("rsq", "/secret", libc::R_OK).await,
            Err(libc::EACCES)
        );
        assert_eq!(access("rsq", "/roots", libc::W_OK).await, Err(libc::EACCES));
        assert_eq!(access("rsq", "/roots", libc::R_OK).await, Ok(()));
    });
}

/// Writes a CA, a server certificate for 127.0.0.1 and one client certificate per common
/// name in `clients`, all signed by the CA, into `dir`; returns the paths of ca.pem,
/// server.pem and server.key (a client's files are `NAME.pem` and `NAME.key`).
fn make_certs(dir: &Path, clients: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    let issue = |params: rcgen::CertificateParams, name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(p(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(p(&format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    issue(
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap(),
        "server",
    );
    for cn in clients {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Weft tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, *cn);
        issue(params, cn);
    }
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// Borrowed (key, value) pairs for `client_volfile`.
fn strs(o: &[(String, String)]) -> Vec<(&str, &str)> {
    o.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn auth_ssl_allow_serves_listed_certificate_names_and_refuses_others_clearly() {
    let s = Setup::new("id-ssl");
    let (ca, cert, key) = make_certs(s.dir.path(), &["alice", "bob-2", "mallory"]);
    let (sec, open) = (s.brick("sec"), s.brick("open"));
    let vf = s.path("server.vol");
    std::fs::write(
        &vf,
        [
            brick_graph(
                "sec",
                &sec,
                &[
                    ("transport.socket.ssl-enabled", "on"),
                    ("auth.ssl-allow", "alice, bob-*"),
                ],
            ),
            brick_graph("open", &open, &[("transport.socket.ssl-enabled", "on")]),
        ]
        .concat(),
    )
    .unwrap();
    let bd = Brickd::start(
        s.dir.path(),
        &vf,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
    );
    let own = |cn: &str| {
        (
            s.path(&format!("{cn}.pem")).display().to_string(),
            s.path(&format!("{cn}.key")).display().to_string(),
        )
    };
    let tls_opts = |cn: Option<&str>| -> Vec<(String, String)> {
        let mut o = vec![
            ("transport.socket.ssl-enabled".to_string(), "on".to_string()),
            ("transport.socket.ssl-ca-list".to_string(), ca.clone()),
        ];
        if let Some(cn) = cn {
            let (c, k) = own(cn);
            o.push(("transport.socket.ssl-own-cert".into(), c));
            o.push(("transport.socket.ssl-private-key".into(), k));
        }
        o
    };

    // Listed names (exact and by pattern) are served.
    for cn in ["alice", "bob-2"] {
        let o = tls_opts(Some(cn));
        let m = s.mount("sec", bd.port, &strs(&o));
        std::fs::write(m.mnt.join(format!("from-{cn}")), cn).unwrap();
        assert_eq!(
            std::fs::read(m.mnt.join(format!("from-{cn}"))).unwrap(),
            cn.as_bytes()
        );
        drop(m);
        assert!(sec.join(format!("from-{cn}")).exists());
    }
    assert!(
        bd.log_text().contains("cert=\"alice\""),
        "the connection log names the certificate:\n{}",
        bd.log_text()
    );

    // A certificate of the same CA with another name: refused, and the mount says why.
    let o = tls_opts(Some("mallory"));
    let out = s.try_mount("mallory", "sec", bd.port, &strs(&o));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificate name \"mallory\" is not allowed by auth.ssl-allow"),
        "{err}"
    );
    assert!(
        log_shows(
            || bd.log_text(),
            "certificate name \"mallory\" is not allowed by auth.ssl-allow"
        ),
        "{}",
        bd.log_text()
    );
    // The list is per brick: mallory may use the brick that names no certificates.
    {
        let m = s.mount("open", bd.port, &strs(&o));
        std::fs::write(m.mnt.join("from-mallory"), b"m").unwrap();
    }

    // TLS without a client certificate: refused, with the reason.
    let o = tls_opts(None);
    let out = s.try_mount("nocert", "sec", bd.port, &strs(&o));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("presented no TLS client certificate"), "{err}");

    // Without TLS: the brick requires it.
    let out = s.try_mount("plain", "sec", bd.port, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires TLS"), "{err}");
}

#[test]
fn identity_options_are_checked_and_listed() {
    let s = Setup::new("id-opts");
    let (_, cert, key) = make_certs(s.dir.path(), &[]);
    let base = s.brick("base");
    let vf = s.path("server.vol");
    std::fs::write(&vf, brick_graph("base", &base, &[])).unwrap();
    // TLS, but no client CA: clients are never asked for a certificate.
    let bd = Brickd::start(s.dir.path(), &vf, &["--tls-cert", &cert, "--tls-key", &key]);
    let attach = |name: &str, opts: &[(&str, &str)]| -> String {
        let b = s.brick(name);
        let f = s.path(&format!("{name}.vol"));
        std::fs::write(&f, brick_graph(name, &b, opts)).unwrap();
        let out = bd.ctl("attach", &[f.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was attached");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = attach("nossl", &[("auth.ssl-allow", "alice")]);
    assert!(
        e.contains("needs transport.socket.ssl-enabled on")
            && e.contains("no certificate name to check"),
        "{e}"
    );
    let e = attach(
        "noca",
        &[
            ("auth.ssl-allow", "alice"),
            ("transport.socket.ssl-enabled", "on"),
        ],
    );
    assert!(e.contains("start weft brickd with --tls-ca"), "{e}");
    let e = attach("emptylist", &[("auth.ssl-allow", " , ")]);
    assert!(e.contains("auth.ssl-allow: names no certificate"), "{e}");
    let e = attach("baduid", &[("server.anonuid", "4294967295")]);
    assert!(e.contains("outside 0..=4294967294"), "{e}");
    let e = attach("badgid", &[("server.anongid", "-1")]);
    assert!(e.contains("outside 0..=4294967294"), "{e}");
    let e = attach("badbool", &[("server.root-squash", "maybe")]);
    assert!(e.contains("not a boolean"), "{e}");
    // Nothing of the refused volfiles was attached.
    let st = bd.ctl("status", &[]);
    assert_eq!(String::from_utf8_lossy(&st.stdout), "base clients=0\n");

    let out = weft_output(&["translators"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "server.root-squash",
        "server.all-squash",
        "server.anonuid",
        "server.anongid",
        "auth.ssl-allow",
    ] {
        assert!(text.contains(&format!("option {key} (")), "{key}:\n{text}");
    }
}
