//! `cdirun-hook`: vendor-neutral OCI hooks for CDI specs and hooks.d definitions.
//!
//! Every subcommand is a hook: it reads the OCI state on stdin, finds the container's rootfs
//! from the bundle's config.json and acts inside it without ever resolving a path on the host.
//! Use them as createContainer hooks (the NVIDIA toolkit's hooks run there too); `ldcache` and
//! `symlinks` also work from prestart and createRuntime.

mod jail;
mod ldcache;
mod provision;
mod rootfs;
mod state;
mod symlinks;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cdirun-hook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Refresh the container's dynamic linker cache for injected library dirs.
    Ldcache {
        /// A library dir in the container (repeatable).
        #[arg(long = "folder", value_name = "DIR")]
        folders: Vec<String>,
        /// ldconfig's path in the container (default: /sbin/ldconfig, then /usr/sbin/ldconfig).
        #[arg(long, value_name = "PATH")]
        ldconfig: Option<String>,
        /// Seconds ldconfig may take.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Create symlinks in the container rootfs.
    Symlinks {
        /// TARGET::LINK; LINK is an absolute path in the container (repeatable).
        #[arg(long = "link", value_name = "TARGET::LINK", required = true)]
        links: Vec<symlinks::Link>,
    },
    /// Run a setup script inside the container before its process starts.
    Provision {
        /// The script, a host path (read by the hook, delivered read-only).
        #[arg(long, value_name = "PATH")]
        script: PathBuf,
        /// The shell in the container that runs it; it must support `set -o pipefail`.
        #[arg(long, default_value = "/bin/sh")]
        shell: String,
        /// Largest script accepted, in bytes.
        #[arg(long, default_value_t = provision::DEFAULT_MAX_SIZE)]
        max_size: u64,
        /// A path in the container to write the script's output to.
        #[arg(long, value_name = "PATH")]
        log: Option<String>,
        /// Seconds the script may take before it is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

fn target() -> Result<state::Target> {
    let state = state::State::read(std::io::stdin().lock())?;
    Ok(state::Target::discover(&state)?)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ldcache {
            folders,
            ldconfig,
            timeout,
        } => {
            let target = target()?;
            ldcache::run(
                &target,
                &folders,
                ldconfig.as_deref(),
                Duration::from_secs(timeout),
            )
            .with_context(|| format!("ldcache for container {:?}", target.id))
        }
        Command::Symlinks { links } => {
            let target = target()?;
            symlinks::run(&target, &links)
                .with_context(|| format!("symlinks for container {:?}", target.id))
        }
        Command::Provision {
            script,
            shell,
            max_size,
            log,
            timeout,
        } => {
            let target = target()?;
            provision::run(
                &target,
                &provision::Options {
                    script: &script,
                    shell: &shell,
                    max_size,
                    log: log.as_deref(),
                    timeout: Duration::from_secs(timeout),
                },
            )
            .with_context(|| format!("provision for container {:?}", target.id))
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        // eprintln! panics on a closed or full stderr; the status still tells the runtime.
        let _ = writeln!(std::io::stderr(), "cdirun-hook: {err:#}");
        std::process::exit(1);
    }
}
