//! `debug/io-stats`: per-FOP call counts, error counts, bytes moved and latency histograms.
//!
//! The table is part of the translator's `dump()`, so it prints with every statedump
//! (`weft statedump MOUNTPOINT`). Histogram buckets are powers of two in microseconds.
//!
//! Options (GlusterFS's `diagnostics.*` names, both on by default, both changeable live):
//! `count-fop-hits off` stops counting calls (the table keeps what it had; bytes moved
//! are still counted); `latency-measurement off` counts calls without timing them.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

/// Latency buckets: bucket i counts calls taking [2^i, 2^(i+1)) µs (bucket 0 also < 1 µs).
pub const BUCKETS: usize = 24;

/// Counters of one FOP.
#[derive(Default, Clone)]
pub struct FopStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Sum of latencies in µs.
    pub total_us: u64,
    /// Largest latency in µs.
    pub max_us: u64,
    /// Latency histogram (see [`BUCKETS`]).
    pub hist: [u64; BUCKETS],
}

impl FopStats {
    /// The latency (µs, upper bucket bound) below which `q` (0..=1) of calls fell.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let want = (self.calls as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= want && want > 0 {
                // The bucket's upper bound, but never above the slowest call seen.
                return (1u64 << (i + 1)).min(self.max_us);
            }
        }
        0
    }
}

/// The io-stats translator.
pub struct IoStats {
    name: String,
    children: Vec<XlatorRef>,
    stats: Mutex<std::collections::BTreeMap<&'static str, FopStats>>,
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    started: Instant,
    /// `count-fop-hits`.
    count: AtomicBool,
    /// `latency-measurement`.
    latency: AtomicBool,
}

impl IoStats {
    async fn observed<T: Debug>(
        &self,
        fop: &'static str,
        _args: String,
        fut: impl Future<Output = Fop<T>>,
    ) -> Fop<T> {
        if !self.count.load(Ordering::Relaxed) {
            return fut.await;
        }
        if !self.latency.load(Ordering::Relaxed) {
            let r = fut.await;
            let mut s = self.stats.lock();
            let e = s.entry(fop).or_default();
            e.calls += 1;
            e.errors += r.is_err() as u64;
            return r;
        }
        let t = Instant::now();
        let r = fut.await;
        let us = t.elapsed().as_micros() as u64;
        let bucket = (64 - us.leading_zeros() as usize)
            .saturating_sub(1)
            .min(BUCKETS - 1);
        let mut s = self.stats.lock();
        let e = s.entry(fop).or_default();
        e.calls += 1;
        e.errors += r.is_err() as u64;
        e.total_us += us;
        e.max_us = e.max_us.max(us);
        e.hist[bucket] += 1;
        r
    }

    /// A snapshot of every FOP's counters.
    pub fn snapshot(&self) -> Vec<(&'static str, FopStats)> {
        self.stats
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    fn wants_args(&self) -> bool {
        false
    }

    fn dump_state(&self) -> String {
        let mut out = format!(
            "uptime = {:.1} s\ncount-fop-hits = {}\nlatency-measurement = {}\nbytes read = {}\nbytes written = {}\n{:<14} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            self.started.elapsed().as_secs_f64(),
            on_off(self.count.load(Ordering::Relaxed)),
            on_off(self.latency.load(Ordering::Relaxed)),
            self.read_bytes.load(Ordering::Relaxed),
            self.written_bytes.load(Ordering::Relaxed),
            "fop", "calls", "errors", "avg-us", "p50-us", "p99-us", "max-us"
        );
        for (fop, s) in self.snapshot() {
            out.push_str(&format!(
                "{fop:<14} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
                s.calls,
                s.errors,
                s.total_us / s.calls.max(1),
                s.quantile_us(0.5),
                s.quantile_us(0.99),
                s.max_us
            ));
        }
        out
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

crate::observe_all_fops!(IoStats, extra: {
    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        self.count.store(options.bool("count-fop-hits"), Ordering::Relaxed);
        self.latency.store(options.bool("latency-measurement"), Ordering::Relaxed);
        Ok(())
    }
    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<bytes::Bytes> {
        let child = self.child()?;
        let r = self.observed("readv", String::new(), child.readv(ctx, fd, size, offset, xd)).await;
        if let Ok((d, _)) = &r {
            self.read_bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }
    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: bytes::Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let child = self.child()?;
        let r = self.observed("writev", String::new(), child.writev(ctx, fd, data, offset, xd)).await;
        if let Ok((n, _)) = &r {
            self.written_bytes.fetch_add(*n, Ordering::Relaxed);
        }
        r
    }
});

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "count-fop-hits",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "Count every FOP's calls and errors (GlusterFS's diagnostics.count-fop-hits). Changes live.",
    },
    OptionSpec {
        key: "latency-measurement",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "Time every FOP into the latency histograms (GlusterFS's diagnostics.latency-measurement). Changes live.",
    },
];

/// The `debug/io-stats` type for the registry.
pub struct IoStatsType;

impl XlatorType for IoStatsType {
    fn type_name(&self) -> &'static str {
        "debug/io-stats"
    }
    fn description(&self) -> &'static str {
        "Counts every FOP and keeps latency histograms, printed with each statedump."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(IoStats {
            name: init.name,
            children: init.children,
            stats: Mutex::new(Default::default()),
            read_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            started: Instant::now(),
            count: AtomicBool::new(init.options.bool("count-fop-hits")),
            latency: AtomicBool::new(init.options.bool("latency-measurement")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statedump once printed p50 512 us beside max 280 us: a bucket's upper bound.
    #[test]
    fn quantiles_never_exceed_the_max() {
        let mut s = FopStats::default();
        for us in [280u64, 200, 150, 260, 270] {
            s.calls += 1;
            s.max_us = s.max_us.max(us);
            s.hist[(63 - us.leading_zeros()) as usize] += 1;
        }
        assert!(s.quantile_us(0.5) <= s.max_us);
        assert_eq!(s.quantile_us(0.99), 280);
    }
}
