//! `run`: create and start a container; in the foreground, forward signals, wait for it, delete
//! it and return its exit status.
//!
//! youki's own `run` blocks signals after `start` and then only `sigwait`s, so a container that
//! exits in between sends a SIGCHLD nobody sees and `run` hangs. Here the init process is reaped
//! with WNOHANG after the signals are blocked and before every `sigwait`: an exit before blocking
//! is found by that reap, an exit after it stays pending for `sigwait`. Nothing is lost.

use anyhow::{Context, Result};
use nix::sys::signal::{self, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::Globals;
use super::create::Init;

pub fn run(args: liboci_cli::Run, globals: &Globals) -> Result<i32> {
    let init = Init {
        id: &args.container_id,
        bundle: &args.bundle,
        pid_file: args.pid_file.as_deref(),
        console_socket: args.console_socket.as_deref(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        detach: args.detach,
    };
    let mut container = init.create(globals)?;
    let container_dir = globals.container_dir(&args.container_id);

    let started = crate::engine::late_hooks::start(&mut container)
        .with_context(|| format!("cannot start container {:?}", args.container_id));
    if let Err(err) = started {
        let _ = super::delete::delete_container(&mut container, &container_dir, true, globals);
        return Err(err);
    }
    if args.detach {
        return Ok(0);
    }
    let pid = container
        .pid()
        .context("container has no init pid after start")?;
    let status = wait_forwarding(pid);
    // --keep leaves the stopped container for a later delete, which releases its claims.
    if !args.keep {
        super::delete::delete_container(&mut container, &container_dir, true, globals)?;
    }
    status
}

/// Waits for `init` (a child of this process) to exit, forwarding every other signal to it, and
/// returns its exit status. Signals are blocked only now, after the container started, so hook
/// processes start with a clean signal mask; `reap` catches an `init` that exited before.
pub fn wait_forwarding(init: Pid) -> Result<i32> {
    let signals = SigSet::all();
    signals.thread_block().context("cannot block signals")?;
    loop {
        if let Some(code) = reap(init)? {
            return Ok(code);
        }
        match signals.wait().context("sigwait failed")? {
            Signal::SIGCHLD => continue,
            // Go runtimes use SIGURG for preemption; SIGWINCH belongs to a terminal cdirun lacks.
            Signal::SIGURG | Signal::SIGWINCH => {}
            other => {
                if let Err(err) = signal::kill(init, other) {
                    tracing::warn!("cannot forward {other} to {init}: {err}");
                }
            }
        }
    }
}

/// Reaps every exited child without blocking; `Some(status)` once `init` is among them.
fn reap(init: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status) => {
                if status.pid() == Some(init) {
                    if let Some(code) = super::exit_code(status) {
                        return Ok(Some(code));
                    }
                }
            }
            Err(nix::errno::Errno::ECHILD) => {
                anyhow::bail!("container init {init} is not a child of cdirun")
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err).context("waitpid failed"),
        }
    }
}
