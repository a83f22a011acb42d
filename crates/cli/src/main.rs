//! `weft`: the one binary. It only parses arguments and wires library crates together.

mod brick_cmd;
mod brickd;
mod demo;
mod mgmt_cmd;
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
    /// Mount a volume at a directory (FUSE): HOST[:PORT]:/VOL from a mgmtd, or --volfile FILE.
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
    /// The management daemon of a node: pool membership, volumes, its brick process, REST API.
    Mgmtd(mgmt_cmd::MgmtdArgs),
    /// The pool's nodes: probe HOST[:PORT], detach HOST [force], status.
    Peer {
        #[command(subcommand)]
        cmd: mgmt_cmd::PeerCmd,
        #[command(flatten)]
        target: mgmt_cmd::Target,
    },
    /// The pool: `weft pool list`.
    Pool {
        #[command(subcommand)]
        cmd: PoolCmd,
        #[command(flatten)]
        target: mgmt_cmd::Target,
    },
    /// Volumes, with GlusterFS's grammar (`weft volume help`).
    Volume {
        /// create, start, stop, delete, info, status, list, set, get, reset, statedump, task...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
        #[command(flatten)]
        target: mgmt_cmd::Target,
    },
    /// `weft system getspec VOL`: print a volume's client volfile.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
        #[command(flatten)]
        target: mgmt_cmd::Target,
    },
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Every node of the pool, this one included.
    List,
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Print a volume's client volfile.
    Getspec {
        /// The volume.
        volume: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Peer { .. }
            | Command::Pool { .. }
            | Command::Volume { .. }
            | Command::System { .. }
            | Command::Translators
            | Command::Statedump { .. }
    ) {
        // A command that prints and exits ends quietly when the reader of its output goes
        // (`| head`, `| grep -q`), as other command-line tools do. Never for the daemons
        // and mounts, which must get EPIPE from a socket whose peer went, not die.
        // SAFETY: sets a signal's disposition at start, before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let r = match cli.command {
        Command::Mount(a) => mount::run(a),
        Command::Volfile(c) => volfile_cmd::run(c),
        Command::Translators => volfile_cmd::list_translators(),
        Command::Statedump { mountpoint } => mount::statedump(&mountpoint),
        Command::Demo(a) => demo::run(a),
        Command::Brickd(a) => brickd::run(a),
        Command::Brick(c) => brick_cmd::run(c),
        Command::Mgmtd(a) => mgmt_cmd::mgmtd(a),
        Command::Peer { cmd, target } => mgmt_cmd::peer(cmd, target),
        Command::Pool {
            cmd: PoolCmd::List,
            target,
        } => mgmt_cmd::pool_list(target),
        Command::Volume { args, target } => mgmt_cmd::volume(args, target),
        Command::System {
            cmd: SystemCmd::Getspec { volume },
            target,
        } => mgmt_cmd::getspec(volume, target),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
