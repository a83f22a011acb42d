//! `weft`: the one binary. It only parses arguments and wires library crates together.

mod brick_cmd;
mod brickd;
mod demo;
mod mount;
mod registry;
mod volfile_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Weft: a scale-out distributed filesystem in the GlusterFS tradition.
#[derive(Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount a volume described by a volfile at a directory (FUSE).
    Mount(mount::MountArgs),
    /// Check a volfile: parse it, build its graph, and print it back.
    #[command(subcommand)]
    Volfile(volfile_cmd::VolfileCmd),
    /// List the translator types this build knows, with their options.
    Translators,
    /// Print the statedump (every translator's state, io-stats tables) of a mounted volume.
    Statedump {
        /// The mountpoint of a running `weft mount`.
        mountpoint: std::path::PathBuf,
    },
    /// Serve bricks over TCP from one process (brick multiplexing), or control a running
    /// brick server (attach, detach, status).
    Brickd(brickd::BrickdArgs),
    /// Offline work on a brick directory: `weft brick check DIR [--repair]`.
    #[command(subcommand)]
    Brick(brick_cmd::BrickCmd),
    /// Run a one-brick demo volume under ./.weft mounted at ./mnt (start, stop, status).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Mount(a) => mount::run(a),
        Command::Volfile(c) => volfile_cmd::run(c),
        Command::Translators => volfile_cmd::list_translators(),
        Command::Statedump { mountpoint } => mount::statedump(&mountpoint),
        Command::Demo(a) => demo::run(a),
        Command::Brickd(a) => brickd::run(a),
        Command::Brick(c) => brick_cmd::run(c),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
