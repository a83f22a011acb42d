//! Fetching a volume's client volfile from management daemons (`weft mgmtd`), as
//! GlusterFS clients fetch theirs from glusterd.
//!
//! The daemon's HTTP API: `GET /v1/volumes/{VOL}/volfile` answers
//! `{"volume", "version", "volfile"}` (200) or `{"error"}` (404 for an unknown volume,
//! other 4xx/5xx for the rest). With `?after=V&wait=S` it long-polls: 200 as soon as the
//! volume's version is greater than `V`, 204 after `S` seconds (at most 60) without a change.
//!
//! A client names one server and any number of backups; [`fetch_volfile`] and
//! [`poll_volfile`] try them in order and use the first that answers. A server that
//! answers with an error about the volume (4xx) is believed: the others are not asked.

use std::fmt;
use std::time::Duration;

/// How long to wait for a TCP connection to a server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest long-poll the servers honour.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A management daemon's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolfileServer {
    /// Host name or IPv4 address.
    pub host: String,
    /// TCP port ([`weft_core::MGMT_PORT`] when not given).
    pub port: u16,
}

impl VolfileServer {
    /// Parses `HOST` or `HOST:PORT` (IPv6 addresses are not supported).
    pub fn parse(s: &str) -> Result<VolfileServer, String> {
        let s = s.trim();
        let (host, port) = match s.split_once(':') {
            None => (s, weft_core::MGMT_PORT),
            Some((h, p)) => {
                let port: u16 = p
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{s:?}: {p:?} is not a TCP port (1 to 65535)"))?;
                (h, port)
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host name"));
        }
        if host.contains(['/', ' ', '@', '?', '#', '[', ']']) {
            return Err(format!(
                "{s:?}: {host:?} is not a host name or IPv4 address"
            ));
        }
        Ok(VolfileServer {
            host: host.to_string(),
            port,
        })
    }

    fn url(&self, volume: &str) -> String {
        format!(
            "http://{}:{}/v1/volumes/{}/volfile",
            self.host, self.port, volume
        )
    }
}

impl fmt::Display for VolfileServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `HOST[:PORT]:/VOLUME`, the source of a mount by volume name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The server named first.
    pub server: VolfileServer,
    /// The volume's name.
    pub volume: String,
}

impl VolumeSpec {
    /// Parses `HOST:/VOLUME` or `HOST:PORT:/VOLUME`.
    pub fn parse(s: &str) -> Result<VolumeSpec, String> {
        let (server, volume) = s.split_once(":/").ok_or_else(|| {
            format!("{s:?} is not HOST[:PORT]:/VOLUME (for example server1:/vol0)")
        })?;
        let server = VolfileServer::parse(server)?;
        check_volume_name(volume).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(VolumeSpec {
            server,
            volume: volume.to_string(),
        })
    }
}

/// A volume name goes into a URL path: letters, digits, `-`, `_` and `.` only.
fn check_volume_name(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("no volume name after :/".into());
    }
    if v == "." || v == ".." {
        return Err(format!("{v:?} is not a volume name"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "volume name {v:?} holds {c:?} (letters, digits, '-', '_' and '.' only)"
        ));
    }
    Ok(())
}

/// A volfile as a server gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedVolfile {
    /// The volume it belongs to.
    pub volume: String,
    /// Its version: a greater one is newer.
    pub version: u64,
    /// The client volfile's text.
    pub volfile: String,
    /// The server that answered.
    pub server: VolfileServer,
}

/// Why no volfile was fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// A server answered with an error about the volume (404: it does not exist); its
    /// own words.
    #[error("{server}: {message}")]
    Refused {
        /// The server that answered.
        server: VolfileServer,
        /// The HTTP status.
        status: u16,
        /// The server's `error` text.
        message: String,
    },
    /// No server answered usefully; why, per server.
    #[error("no volfile server answered: {}", list(.0))]
    NoServer(Vec<(VolfileServer, String)>),
}

impl FetchError {
    /// True when a server said the volume does not exist (404).
    pub fn is_unknown_volume(&self) -> bool {
        matches!(self, FetchError::Refused { status: 404, .. })
    }
}

fn list(v: &[(VolfileServer, String)]) -> String {
    v.iter()
        .map(|(s, why)| format!("{s}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(serde::Deserialize)]
struct Answer {
    volume: String,
    version: u64,
    volfile: String,
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// What one server said.
enum Said {
    Volfile(FetchedVolfile),
    Unchanged,
    Refused(u16, String),
    Failed(String),
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .build()
        .expect("a plain HTTP client always builds")
}

/// Why a request failed, in a few words (the root cause, e.g. "connection refused").
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut src: &dyn std::error::Error = e;
    while let Some(s) = src.source() {
        src = s;
    }
    let text = src.to_string();
    let text = text
        .split(" (os error")
        .next()
        .unwrap_or(&text)
        .to_lowercase();
    if e.is_connect() && !text.contains("connect") && !text.contains("refused") {
        format!("cannot connect: {text}")
    } else {
        text
    }
}

async fn ask(
    http: &reqwest::Client,
    server: &VolfileServer,
    volume: &str,
    after: Option<(u64, Duration)>,
) -> Said {
    let req = match after {
        Some((v, wait)) => {
            let wait = wait.min(MAX_WAIT);
            let url = format!(
                "{}?after={v}&wait={}&client={}",
                server.url(volume),
                wait.as_secs().max(1),
                mount_id()
            );
            http.get(url).timeout(wait + FETCH_TIMEOUT)
        }
        None => http.get(server.url(volume)).timeout(FETCH_TIMEOUT),
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Said::Failed(cause(&e)),
    };
    let status = resp.status().as_u16();
    if status == 204 {
        return Said::Unchanged;
    }
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Said::Failed(format!("HTTP {status}, body cut short: {}", cause(&e))),
    };
    if status == 200 {
        return match serde_json::from_slice::<Answer>(&body) {
            Ok(a) if a.volume == volume => Said::Volfile(FetchedVolfile {
                volume: a.volume,
                version: a.version,
                volfile: a.volfile,
                server: server.clone(),
            }),
            Ok(a) => Said::Failed(format!(
                "answered with volume {:?} when asked for {volume:?}",
                a.volume
            )),
            Err(e) => Said::Failed(format!(
                "HTTP 200 with a body that is not a volfile answer: {e}"
            )),
        };
    }
    let message = serde_json::from_slice::<ErrorAnswer>(&body)
        .map(|e| e.error)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                )
            }
        });
    if (400..500).contains(&status) {
        Said::Refused(status, message)
    } else {
        Said::Failed(message)
    }
}

/// This process's id as a mount following a volume: `HOST:PID` (the host name as the
/// kernel has it), shown by mgmtd when a rebalance waits for mounts.
pub fn mount_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}:{}", std::process::id())
}

/// Fetches the current volfile of `volume` from the first of `servers` that answers.
pub async fn fetch_volfile(
    servers: &[VolfileServer],
    volume: &str,
) -> Result<FetchedVolfile, FetchError> {
    ask_all(&http(), servers, volume, None)
        .await
        .map(|f| f.expect("a plain fetch never answers unchanged"))
}

/// One long-poll round: the volfile of `volume` once its version is greater than
/// `after`, or `None` when `wait` passed without a change. The servers are asked in
/// order; the first that answers is used. The poll tells the server that this mount
/// ([`mount_id`]) runs version `after`: call it only once that graph serves.
pub async fn poll_volfile(
    servers: &[VolfileServer],
    volume: &str,
    after: u64,
    wait: Duration,
) -> Result<Option<FetchedVolfile>, FetchError> {
    ask_all(&http(), servers, volume, Some((after, wait))).await
}

async fn ask_all(
    http: &reqwest::Client,
    servers: &[VolfileServer],
    volume: &str,
    after: Option<(u64, Duration)>,
) -> Result<Option<FetchedVolfile>, FetchError> {
    let mut failures = Vec::new();
    for s in servers {
        match ask(http, s, volume, after).await {
            Said::Volfile(f) => return Ok(Some(f)),
            Said::Unchanged => return Ok(None),
            Said::Refused(status, message) => {
                return Err(FetchError::Refused {
                    server: s.clone(),
                    status,
                    message,
                })
            }
            Said::Failed(why) => {
                tracing::debug!("volfile server {s}: {why}");
                failures.push((s.clone(), why));
            }
        }
    }
    Err(FetchError::NoServer(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_servers_parse() {
        let s = VolumeSpec::parse("node1:/vol0").unwrap();
        assert_eq!(s.server.host, "node1");
        assert_eq!(s.server.port, weft_core::MGMT_PORT);
        assert_eq!(s.volume, "vol0");
        let s = VolumeSpec::parse("10.0.0.2:24200:/v.1_x-y").unwrap();
        assert_eq!(s.server.to_string(), "10.0.0.2:24200");
        assert_eq!(s.volume, "v.1_x-y");
        for bad in [
            "node1",
            "node1:/",
            ":/vol",
            "node1:0:/v",
            "node1:x:/v",
            "h:/a/b",
            "h:/..",
        ] {
            assert!(VolumeSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(VolfileServer::parse("h2:7").unwrap().port, 7);
        assert!(VolfileServer::parse("").is_err());
    }

    #[tokio::test]
    async fn refused_connections_are_listed_per_server() {
        // Two ports nothing listens on (bound, then closed).
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        let servers: Vec<VolfileServer> = ports
            .iter()
            .map(|p| VolfileServer::parse(&format!("127.0.0.1:{p}")).unwrap())
            .collect();
        let e = fetch_volfile(&servers, "v").await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("no volfile server answered: 127.0.0.1:"),
            "{text}"
        );
        for p in ports {
            assert!(text.contains(&format!("127.0.0.1:{p}: ")), "{text}");
        }
        assert!(text.contains("refused"), "{text}");
    }
}
