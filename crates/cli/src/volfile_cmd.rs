//! `weft volfile check` and `weft translators`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use weft_core::volfile::Volfile;
use weft_core::Graph;

/// Volfile subcommands.
#[derive(Subcommand)]
pub enum VolfileCmd {
    /// Parse FILE, check every type and option, and print the canonical text.
    Check {
        /// The volfile.
        file: PathBuf,
        /// Also build the graph (opens bricks: checks directories and xattr support).
        #[arg(long)]
        build: bool,
    },
}

/// Reads and structurally checks a volfile; errors name the file and line.
pub fn load(file: &Path) -> Result<Volfile> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read volfile {}", file.display()))?;
    Volfile::parse(&text).with_context(|| format!("bad volfile {}", file.display()))
}

/// Builds the graph of `vf` with every translator this build knows.
pub fn build(file: &Path, vf: &Volfile) -> Result<Graph> {
    // Network translators start their connections as they are built: give them a runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = rt.enter();
    Graph::build(vf, &crate::registry::registry())
        .with_context(|| format!("bad volfile {}", file.display()))
}

/// Runs a volfile subcommand.
pub fn run(cmd: VolfileCmd) -> Result<()> {
    match cmd {
        VolfileCmd::Check { file, build: b } => {
            let vf = load(&file)?;
            if b {
                build(&file, &vf)?;
            } else {
                Graph::check(&vf, &crate::registry::registry())
                    .with_context(|| format!("bad volfile {}", file.display()))?;
            }
            print!("{vf}");
            Ok(())
        }
    }
}

/// Prints every translator type and its options.
pub fn list_translators() -> Result<()> {
    let reg = crate::registry::registry();
    for name in reg.names() {
        let Some(t) = reg.get(name) else { continue };
        let (min, max) = t.children();
        println!("{name}: {} (subvolumes: {min}..={max})", t.description());
        for o in t.options() {
            let d = o
                .default
                .map(|d| format!(" [default: {d}]"))
                .unwrap_or_else(|| " [required]".into());
            println!("    option {} ({:?}){d}: {}", o.key, o.kind, o.description);
        }
    }
    Ok(())
}
