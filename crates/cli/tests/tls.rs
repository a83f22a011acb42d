//! TLS between protocol/client and the brick server, with certificates made for the test.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;

/// Writes a CA and a server certificate for 127.0.0.1 signed by it into `dir`; returns
/// (ca.pem, server.pem, server.key).
fn make_certs(dir: &Path, tag: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let p = |n: &str| dir.join(format!("{tag}-{n}")).display().to_string();
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("server.pem"), cert.pem()).unwrap();
    std::fs::write(p("server.key"), key.serialize_pem()).unwrap();
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

fn try_mount(volfile: &Path, mnt: &Path) -> std::process::Output {
    weft()
        .args(["mount", "--foreground", "--volfile"])
        .arg(volfile)
        .arg(mnt)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn tls_clients_connect_and_plain_or_untrusting_ones_are_refused() {
    let dir = scratch("net-tls");
    let (ca, cert, key) = make_certs(dir.path(), "good");
    let (other_ca, _, _) = make_certs(dir.path(), "other");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(
        &vf,
        brick_graph("sec", &brick, &[("transport.socket.ssl-enabled", "on")]),
    )
    .unwrap();
    let bd = Brickd::start(dir.path(), &vf, &["--tls-cert", &cert, "--tls-key", &key]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    // With TLS and the right CA: a working mount.
    let cv = dir.path().join("tls.vol");
    std::fs::write(
        &cv,
        client_volfile(
            "sec",
            bd.port,
            &[
                ("transport.socket.ssl-enabled", "on"),
                ("transport.socket.ssl-ca-list", &ca),
            ],
        ),
    )
    .unwrap();
    {
        let m = mount_volfile(&cv, &mnt, &dir.path().join("m.log"), &[]);
        std::fs::write(m.mnt.join("secret"), b"over tls").unwrap();
        assert_eq!(std::fs::read(m.mnt.join("secret")).unwrap(), b"over tls");
        assert!(bd.log_text().contains("tls=true"));
    }

    // Without TLS: the brick refuses.
    let plain = dir.path().join("plain.vol");
    std::fs::write(&plain, client_volfile("sec", bd.port, &[])).unwrap();
    let out = try_mount(&plain, &mnt);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires TLS"), "{err}");

    // Trusting another CA: the TLS handshake fails, clearly.
    let wrong = dir.path().join("wrong.vol");
    std::fs::write(
        &wrong,
        client_volfile(
            "sec",
            bd.port,
            &[
                ("transport.socket.ssl-enabled", "on"),
                ("transport.socket.ssl-ca-list", &other_ca),
            ],
        ),
    )
    .unwrap();
    let out = try_mount(&wrong, &mnt);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(!is_mounted(&mnt));
}
