//! The mounts that follow a volume through this mgmtd: each long-poll for a newer volfile
//! (`GET /v1/volumes/{name}/volfile?after=V&client=ID`) says that mount `ID` runs version
//! `V` of the volume's graph (a mount asks again only once it switched to what it got).
//! A rebalance waits for every mount still following the volume to run its current
//! version before it moves files, since a mount on an older graph does not know the
//! bricks files go to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A mount is counted as following a volume for this long after its last poll (a poll
/// waits at most 60 s before the mount asks again).
pub const FOLLOWING: Duration = Duration::from_secs(90);

/// One mount following a volume.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MountSeen {
    /// The mount's own id (`HOST:PID` of its process).
    pub client: String,
    /// The version of the volume's graph it runs.
    pub version: u64,
    /// Seconds since its last poll.
    pub seen_secs_ago: u64,
}

/// The mounts seen polling this mgmtd, by (volume, client).
#[derive(Default)]
pub struct Mounts {
    seen: Mutex<HashMap<(String, String), (u64, Instant)>>,
}

impl Mounts {
    /// Notes that mount `client` runs `version` of `volume`.
    pub fn note(&self, volume: &str, client: &str, version: u64) {
        let mut s = self.seen.lock();
        s.retain(|_, (_, t)| t.elapsed() < FOLLOWING);
        s.insert(
            (volume.to_string(), client.to_string()),
            (version, Instant::now()),
        );
    }

    /// The mounts following `volume` (seen within [`FOLLOWING`]).
    pub fn of(&self, volume: &str) -> Vec<MountSeen> {
        self.seen
            .lock()
            .iter()
            .filter(|((v, _), (_, t))| v == volume && t.elapsed() < FOLLOWING)
            .map(|((_, c), (ver, t))| MountSeen {
                client: c.clone(),
                version: *ver,
                seen_secs_ago: t.elapsed().as_secs(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_poll_of_each_mount_counts() {
        let m = Mounts::default();
        m.note("v", "h:1", 3);
        m.note("v", "h:2", 3);
        m.note("v", "h:1", 4);
        m.note("w", "h:1", 9);
        let mut of = m.of("v");
        of.sort_by(|a, b| a.client.cmp(&b.client));
        assert_eq!(
            of.iter()
                .map(|s| (s.client.as_str(), s.version))
                .collect::<Vec<_>>(),
            [("h:1", 4), ("h:2", 3)]
        );
        assert!(m.of("x").is_empty());
    }
}
