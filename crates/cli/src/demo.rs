//! `weft demo`: a one-brick volume under ./.weft, mounted at ./mnt, for a first look.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use weft_core::volfile::{Volfile, VolumeDecl};

/// Arguments of `weft demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// What to do.
    #[arg(value_enum, default_value_t = DemoAction::Start)]
    action: DemoAction,
    /// Where the brick and volfile live.
    #[arg(long, default_value = ".weft")]
    state_dir: PathBuf,
    /// Where to mount.
    #[arg(long, default_value = "mnt")]
    mountpoint: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum DemoAction {
    /// Create the brick and volfile if needed, and mount.
    Start,
    /// Unmount.
    Stop,
    /// Say whether it is mounted.
    Status,
}

/// The demo volfile: posix brick, io-stats on top.
pub fn demo_volfile(brick: &std::path::Path) -> Volfile {
    Volfile {
        volumes: vec![
            VolumeDecl::new("demo-posix", "storage/posix").option("directory", brick.display()),
            VolumeDecl::new("demo", "debug/io-stats").subvolumes(&["demo-posix"]),
        ],
    }
}

/// Runs the demo action.
pub fn run(a: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&a.state_dir)
        .with_context(|| format!("cannot create {}", a.state_dir.display()))?;
    let state = a.state_dir.canonicalize()?;
    let mp = std::env::current_dir()?.join(&a.mountpoint);
    match a.action {
        DemoAction::Status => {
            if weft_fuse::is_mounted(&mp) {
                println!("weft demo: mounted at {}", mp.display());
            } else {
                println!("weft demo: not mounted");
            }
            Ok(())
        }
        DemoAction::Stop => {
            if !weft_fuse::is_mounted(&mp) {
                println!("weft demo: not mounted");
                return Ok(());
            }
            let st = Command::new("umount")
                .arg(&mp)
                .status()
                .context("cannot run umount")?;
            if !st.success() {
                bail!(
                    "umount {} failed: is something still using it?",
                    mp.display()
                );
            }
            println!("weft demo: unmounted {}", mp.display());
            Ok(())
        }
        DemoAction::Start => {
            if weft_fuse::is_mounted(&mp) {
                println!("weft demo: already mounted at {}", mp.display());
                return Ok(());
            }
            let brick = state.join("demo-brick");
            std::fs::create_dir_all(&brick)?;
            std::fs::create_dir_all(&mp)?;
            let vol = state.join("demo.vol");
            std::fs::write(&vol, demo_volfile(&brick).to_string())?;
            crate::mount::run(crate::mount::MountArgs {
                source: None,
                volfile: Some(vol.clone()),
                backup_volfile_servers: Vec::new(),
                mountpoint: Some(mp.clone()),
                foreground: false,
                attr_timeout: 1.0,
                entry_timeout: 1.0,
                log_level: "info".into(),
                log_file: Some(state.join("demo-mount.log")),
            })?;
            println!(
                "\nWeft demo volume is up.\n  volfile: {}\n  brick:   {} (plain files; look with ls)\n  mount:   {}\n\nTry:\n  echo hello > {m}/hello.txt && cat {m}/hello.txt\n  ls -la {b}\n  weft statedump {m}     # per-FOP counts and latencies\nStop it with:\n  weft demo stop   (or: umount {m})",
                vol.display(),
                brick.display(),
                mp.display(),
                m = mp.display(),
                b = brick.display()
            );
            Ok(())
        }
    }
}
