//! `weft brick check DIR [--repair]`: the offline brick checker.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

/// Offline work on a brick directory (run while no brick server serves it).
#[derive(Subcommand)]
pub enum BrickCmd {
    /// Report (and with --repair, fix) entries without a gfid, missing or stale handles,
    /// gfids shared by two inodes (copies made inside the brick) and handles left behind.
    Check {
        /// The brick directory.
        dir: PathBuf,
        /// Fix what is found: gfids for entries without one, handles recreated, a fresh gfid
        /// for each copy, stale handles removed.
        #[arg(long)]
        repair: bool,
    },
}

/// Runs a brick subcommand; a check that finds problems without --repair fails.
pub fn run(cmd: BrickCmd) -> Result<()> {
    match cmd {
        BrickCmd::Check { dir, repair } => {
            let report = weft_xlators::storage::posix::check::check(&dir, repair)
                .map_err(anyhow::Error::msg)?;
            for f in &report.findings {
                println!("{f}");
            }
            let n = report.findings.len();
            println!(
                "{}: {} entries, {n} problem{}{}",
                dir.display(),
                report.entries,
                if n == 1 { "" } else { "s" },
                if n > 0 && repair { ", repaired" } else { "" }
            );
            if n > 0 && !repair {
                bail!("{n} problem(s) found; run again with --repair to fix them");
            }
            Ok(())
        }
    }
}
