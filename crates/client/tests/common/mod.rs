//! What the client library's tests share: a local posix volume and the same kind of brick
//! served by an in-process brick server over loopback TCP.

#![allow(dead_code)] // each test binary uses its own part

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_client::{OpenOptions, Volume};
use weft_core::Registry;

/// Every translator type the tests need, `protocol/*` included.
pub fn registry() -> Registry {
    let mut r = weft_xlators::registry();
    weft_protocol::register(&mut r);
    r
}

/// A `storage/posix` brick on `dir` under `features/locks`, the top named `v`.
pub fn posix_volfile(dir: &Path) -> String {
    format!(
        "volume v-posix\n type storage/posix\n option directory {}\nend-volume\n\
         volume v\n type features/locks\n subvolumes v-posix\nend-volume\n",
        dir.display()
    )
}

/// A local volume on a fresh temporary directory (kept while the volume lives).
pub async fn local_volume() -> (Volume, tempfile::TempDir) {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let vol = Volume::from_volfile(
        &posix_volfile(dir.path()),
        registry(),
        OpenOptions::default(),
    )
    .await
    .unwrap();
    (vol, dir)
}

/// An in-process brick server serving brick `v` (posix + locks on a temporary directory)
/// on a loopback port.
pub struct Server {
    /// The server.
    pub server: Arc<weft_protocol::BrickServer>,
    /// Where it listens.
    pub port: u16,
    accept: tokio::task::JoinHandle<()>,
    /// The brick's directory.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with one brick.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let server = weft_protocol::BrickServer::new(registry(), None, Default::default());
        let vf = format!(
            "{}volume v-server\n type protocol/server\n subvolumes v\nend-volume\n",
            posix_volfile(dir.path())
        );
        server.attach(&vf).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(server.clone().serve(listener));
        Server {
            server,
            port,
            accept,
            dir,
        }
    }

    /// A client volfile for brick `brick` of this server.
    pub fn client_volfile(&self, brick: &str) -> String {
        format!(
            "volume c\n type protocol/client\n option remote-host 127.0.0.1\n option remote-port {}\n option remote-subvolume {brick}\nend-volume\n",
            self.port
        )
    }

    /// A new client of brick `v`.
    pub async fn volume(&self) -> Volume {
        Volume::from_volfile(
            &self.client_volfile("v"),
            registry(),
            OpenOptions::default(),
        )
        .await
        .unwrap()
    }

    /// Stops accepting and shuts the server down.
    pub async fn stop(self) {
        self.accept.abort();
        self.server.shutdown().await;
    }
}

/// The volume path `dir/name` for raw name bytes.
pub fn join(dir: &str, name: &[u8]) -> PathBuf {
    Path::new(dir).join(OsStr::from_bytes(name))
}
