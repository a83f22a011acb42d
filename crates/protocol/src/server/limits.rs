//! What one peer may make the brick server hold, the process-wide counters behind the
//! limits, and the rate-limited log lines that say when a limit is hit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Limits that keep one peer from taking the server's memory, descriptors or time. Each is
/// a `weft brickd` flag (see docs/ARCHITECTURE.md, "Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests one connection may have in flight; more closes the connection.
    pub max_inflight: usize,
    /// Bytes one connection may have in flight: each request's frame plus what it makes the
    /// server build (a read's size, a checksum's length, a directory read's size, a fixed
    /// cost for the rest). A request that does not fit waits, unread, until earlier ones
    /// finish; a connection kept over its budget for `idle_timeout` is closed.
    pub max_inflight_bytes: usize,
    /// How long a new connection may take to complete its handshake.
    pub handshake_timeout: Duration,
    /// A connection silent this long is taken as dead (its client's host is gone) and
    /// closed, releasing its fds and locks (or keeping them for the brick's
    /// `grace-timeout`); so is one whose replies the socket has not taken for this long
    /// (its peer stopped reading). Clients ping at least every 10 s.
    pub idle_timeout: Duration,
    /// Files and directories one connection may hold open; more opens fail with `EMFILE`.
    pub max_fds_per_client: usize,
    /// Files and directories every connection of the process together may hold open; more
    /// opens fail with `EMFILE`.
    pub max_fds: usize,
    /// Connections the process serves at once (handshaking ones included); more are refused.
    pub max_connections: usize,
    /// Connections from one address (one IPv6 /64) at once; more are refused.
    pub max_connections_per_addr: usize,
    /// Pings (and pongs) read from one connection per second; beyond it the server reads
    /// from that connection more slowly. Clients ping at most 20 times a second.
    pub max_pings_per_sec: u32,
    /// Requests of one connection running at once (lock requests, which may wait for
    /// other requests, are not counted); more wait their turn. Keeps one peer's flood of
    /// requests from filling the runtime's queues ahead of everyone else's.
    pub max_running: usize,
    /// Bytes of reading, writing, checksumming and directory reading one connection may
    /// have running at once; more wait their turn (a single larger request runs alone).
    /// Keeps one peer's heavy requests from taking every core.
    pub max_work_bytes: usize,
}

/// Requests in flight per connection by default.
pub const DEFAULT_MAX_INFLIGHT: usize = 4096;
/// Bytes in flight per connection by default.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 256 << 20;
/// Open fds per connection by default.
pub const DEFAULT_MAX_FDS_PER_CLIENT: usize = 65536;
/// Connections per process by default (fewer when RLIMIT_NOFILE is low).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Connections per address by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDR: usize = 256;
/// Requests of one connection running at once by default.
pub const DEFAULT_MAX_RUNNING: usize = 64;
/// Bytes of I/O work one connection may have running at once by default.
pub const DEFAULT_MAX_WORK_BYTES: usize = 4 << 20;
/// Descriptors kept aside from connections and open files: the listener, the control
/// socket, logs, the brick roots, the short-lived descriptors a FOP opens while it runs.
pub const FD_RESERVE: usize = 512;

impl Default for Limits {
    /// The defaults for this process's current RLIMIT_NOFILE soft limit.
    fn default() -> Self {
        Limits::for_nofile(nofile_limit())
    }
}

impl Limits {
    /// The defaults for a process allowed `nofile` descriptors: 4096 requests and 256 MiB
    /// in flight per connection, of which 64 requests and 4 MiB of I/O running, 10 s to
    /// handshake, 60 s idle, 1024 open fds per connection, 100 pings a second; connections (4096, 256 per address) and open fds
    /// per process split what `nofile` leaves after [`FD_RESERVE`], so that accepting a
    /// connection or opening a file within the limits never runs out of descriptors.
    pub fn for_nofile(nofile: u64) -> Limits {
        let avail = usize::try_from(nofile)
            .unwrap_or(usize::MAX)
            .saturating_sub(FD_RESERVE);
        let max_connections = DEFAULT_MAX_CONNECTIONS.min(avail / 2).max(1);
        let max_fds = Limits::fds_for(nofile, max_connections);
        Limits {
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_fds_per_client: DEFAULT_MAX_FDS_PER_CLIENT.min(max_fds),
            max_fds,
            max_connections,
            max_connections_per_addr: DEFAULT_MAX_CONNECTIONS_PER_ADDR.min(max_connections),
            max_pings_per_sec: 100,
            max_running: DEFAULT_MAX_RUNNING,
            max_work_bytes: DEFAULT_MAX_WORK_BYTES,
        }
    }

    /// Open fds per process that fit in `nofile` descriptors beside `connections`
    /// connections and [`FD_RESERVE`] (at least 1).
    pub fn fds_for(nofile: u64, connections: usize) -> usize {
        usize::try_from(nofile)
            .unwrap_or(usize::MAX)
            .saturating_sub(FD_RESERVE)
            .saturating_sub(connections)
            .max(1)
    }

    /// Descriptors these limits may use at most: connections, open fds and the reserve.
    pub fn fds_needed(&self) -> u64 {
        (self.max_connections as u64)
            .saturating_add(self.max_fds as u64)
            .saturating_add(FD_RESERVE as u64)
    }
}

/// This process's RLIMIT_NOFILE soft limit (1024 if it cannot be read).
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    r.rlim_cur
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new soft
/// limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            r.rlim_cur = r.rlim_max;
        }
    }
    Ok(r.rlim_cur)
}

/// Log lines for limits being hit, at most one per kind every 10 s, each saying how many
/// were left out since the last.
#[derive(Default)]
pub(crate) struct LimitLog {
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

/// How often one kind of limit is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl LimitLog {
    /// Calls `emit(suppressed)` (the number of hits not logged since the last line) unless
    /// `kind` was logged in the last 10 s.
    pub(crate) fn hit(&self, kind: &'static str, emit: impl FnOnce(u64)) {
        let suppressed = {
            let mut m = self.last.lock();
            let now = Instant::now();
            match m.get_mut(kind) {
                Some((at, n)) if now.duration_since(*at) < LOG_EVERY => {
                    *n += 1;
                    return;
                }
                Some((at, n)) => {
                    *at = now;
                    std::mem::take(n)
                }
                None => {
                    m.insert(kind, (now, 0));
                    0
                }
            }
        };
        emit(suppressed);
    }
}

/// ", N more not logged" when some hits were left out.
pub(crate) fn more(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last such line)")
    }
}

/// Process-wide counts the limits are checked against.
#[derive(Default)]
pub(crate) struct Counters {
    connections: AtomicUsize,
    per_addr: Mutex<HashMap<IpAddr, usize>>,
    open_fds: AtomicUsize,
    /// Rate-limited log lines for every limit.
    pub(crate) log: LimitLog,
}

/// The key connections are counted under: the address, IPv4-mapped IPv6 as IPv4, other
/// IPv6 addresses by their /64 (one host usually has a whole /64).
fn addr_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(s.into())
        }
        v4 => v4,
    }
}

/// One admitted connection; gives its place back when dropped.
pub(crate) struct ConnSlot {
    counters: Arc<Counters>,
    key: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.counters.connections.fetch_sub(1, Ordering::AcqRel);
        let mut m = self.counters.per_addr.lock();
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl Counters {
    /// Takes a connection place for a peer at `ip`, or says which limit refuses it.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, l: &Limits) -> Result<ConnSlot, String> {
        let key = addr_key(ip);
        let mut m = self.per_addr.lock();
        let from_addr = m.get(&key).copied().unwrap_or(0);
        if from_addr >= l.max_connections_per_addr {
            return Err(format!(
                "too many connections from {} (at most {} per address)",
                key, l.max_connections_per_addr
            ));
        }
        if self.connections.fetch_add(1, Ordering::AcqRel) >= l.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(format!(
                "too many connections to this server (at most {})",
                l.max_connections
            ));
        }
        *m.entry(key).or_insert(0) += 1;
        Ok(ConnSlot {
            counters: self.clone(),
            key,
        })
    }

    /// Connections served now.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Files and directories open now, over every connection.
    pub(crate) fn open_fds(&self) -> usize {
        self.open_fds.load(Ordering::Acquire)
    }
}

/// Which open-fd limit refused an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdLimit {
    /// The connection's own limit.
    Client(usize),
    /// The process-wide limit.
    Process(usize),
}

/// Counts one connection's open fds against its limit and the process's.
pub(crate) struct FdCount {
    open: AtomicUsize,
    max: usize,
    max_process: usize,
    counters: Arc<Counters>,
}

/// A place for one open fd, taken before the open runs; given back when dropped unless
/// [`FdCount::keep`] keeps it for the fd that was opened.
pub(crate) struct FdSlot<'a> {
    count: &'a FdCount,
    armed: bool,
}

impl Drop for FdSlot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.count.release(1);
        }
    }
}

impl FdCount {
    /// A counter for one connection.
    pub(crate) fn new(counters: Arc<Counters>, l: &Limits) -> FdCount {
        FdCount {
            open: AtomicUsize::new(0),
            max: l.max_fds_per_client,
            max_process: l.max_fds,
            counters,
        }
    }

    /// Takes a place for one more open fd, or says which limit refuses it.
    pub(crate) fn reserve(&self) -> Result<FdSlot<'_>, FdLimit> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(FdLimit::Client(self.max));
        }
        if self.counters.open_fds.fetch_add(1, Ordering::AcqRel) >= self.max_process {
            self.counters.open_fds.fetch_sub(1, Ordering::AcqRel);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(FdLimit::Process(self.max_process));
        }
        Ok(FdSlot {
            count: self,
            armed: true,
        })
    }

    /// Keeps `slot`'s place for an fd now open (given back by [`FdCount::release`]).
    pub(crate) fn keep(&self, mut slot: FdSlot<'_>) {
        slot.armed = false;
    }

    /// Gives back the places of `n` fds closed.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.open.fetch_sub(n, Ordering::AcqRel);
            self.counters.open_fds.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Fds this connection holds open (and opens under way).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_in_the_descriptor_limit() {
        for nofile in [64u64, 1024, 4096, 20_000, 1 << 20] {
            let l = Limits::for_nofile(nofile);
            assert!(l.max_connections >= 1 && l.max_fds >= 1, "{nofile}: {l:?}");
            assert!(l.max_connections_per_addr <= l.max_connections);
            assert!(l.max_fds_per_client <= l.max_fds);
            if nofile >= 2048 {
                assert!(l.fds_needed() <= nofile, "{nofile}: {l:?}");
            }
        }
        let big = Limits::for_nofile(1 << 20);
        assert_eq!(big.max_connections, 4096);
        assert_eq!(big.max_connections_per_addr, 256);
        assert_eq!(big.max_fds_per_client, 65536);
        assert_eq!(big.max_fds, (1 << 20) - 4096 - FD_RESERVE);
        assert_eq!(big.max_inflight, 4096);
        assert_eq!(big.max_inflight_bytes, 256 << 20);
    }

    #[test]
    fn connections_are_counted_per_address_and_given_back() {
        let c = Arc::new(Counters::default());
        let l = Limits {
            max_connections: 3,
            max_connections_per_addr: 2,
            ..Limits::for_nofile(1 << 20)
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = c.admit(a, &l).unwrap();
        let _s2 = c.admit(mapped, &l).unwrap();
        assert!(c.admit(a, &l).err().unwrap().contains("per address"));
        let _s3 = c.admit(b, &l).unwrap();
        assert!(c.admit(b, &l).err().unwrap().contains("at most 3"));
        drop(s1);
        assert_eq!(c.connections(), 2);
        let _s4 = c.admit(a, &l).unwrap();
        // One IPv6 /64 is one address.
        let l6 = Limits {
            max_connections_per_addr: 1,
            ..l
        };
        let c6 = Arc::new(Counters::default());
        let _x = c6.admit("fd00::1".parse().unwrap(), &l6).unwrap();
        assert!(c6.admit("fd00::2".parse().unwrap(), &l6).is_err());
        assert!(c6.admit("fd00:0:0:1::1".parse().unwrap(), &l6).is_ok());
    }

    #[test]
    fn fd_slots_count_per_connection_and_per_process() {
        let c = Arc::new(Counters::default());
        let l = Limits {
            max_fds_per_client: 2,
            max_fds: 3,
            ..Limits::for_nofile(1 << 20)
        };
        let one = FdCount::new(c.clone(), &l);
        let two = FdCount::new(c.clone(), &l);
        let a = one.reserve().unwrap();
        one.keep(a);
        {
            let _b = one.reserve().unwrap();
            assert_eq!(one.reserve().err(), Some(FdLimit::Client(2)));
        } // dropped: the open failed
        one.keep(one.reserve().unwrap());
        two.keep(two.reserve().unwrap());
        assert_eq!(two.reserve().err(), Some(FdLimit::Process(3)));
        assert_eq!(c.open_fds(), 3);
        one.release(2);
        assert_eq!(c.open_fds(), 1);
        assert_eq!(one.open(), 0);
        two.keep(two.reserve().unwrap());
    }

    #[test]
    fn the_limit_log_keeps_one_line_per_kind_and_counts_the_rest() {
        let log = LimitLog::default();
        let mut lines = Vec::new();
        for _ in 0..5 {
            log.hit("fds", |n| lines.push(n));
        }
        log.hit("pings", |n| lines.push(n));
        assert_eq!(lines, vec![0, 0]);
        assert_eq!(more(0), "");
        assert!(more(4).contains('4'));
    }
}
