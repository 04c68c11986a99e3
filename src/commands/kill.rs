//! `kill`: send a signal (name or number) to a container's init, or with `--all` to all its
//! processes.
//!
//! Like runc, any number up to 64 is a signal: 0 checks that the init is there, and the
//! realtime ones (34-64) are what podman sends to stop a systemd container (SIGRTMIN+3, as a
//! number). libcontainer knows neither, so cdirun sends those itself.

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupManager;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;
use nix::unistd::Pid;

use super::Globals;

/// The highest signal number on Linux (SIGRTMAX).
const MAX_SIGNAL: i32 = 64;

pub fn kill(args: liboci_cli::Kill, globals: &Globals) -> Result<()> {
    let id = &args.container_id;
    let mut container = super::load_container(globals, id)?;
    let signal = parse(&args.signal)?;
    // containerd reads "container not running" as "already stopped", not as a failure.
    if container.status() == ContainerStatus::Stopped && !args.all {
        bail!("cannot signal container {id:?}: container not running");
    }
    match signal {
        Parsed::Known(signal) => container
            .kill(signal, args.all)
            .map_err(anyhow::Error::from),
        Parsed::Number(number) => send_raw(&container, number, args.all),
    }
    .with_context(|| format!("cannot signal container {id:?}"))
}

enum Parsed {
    /// A signal libcontainer knows by name or number.
    Known(Signal),
    /// 0 or a realtime signal, by number.
    Number(i32),
}

fn parse(text: &str) -> Result<Parsed> {
    if let Ok(signal) = Signal::try_from(text) {
        return Ok(Parsed::Known(signal));
    }
    match text.parse::<i32>() {
        Ok(number) if (0..=MAX_SIGNAL).contains(&number) => Ok(Parsed::Number(number)),
        _ => bail!("unknown signal {text:?}"),
    }
}

/// Sends a signal libcontainer cannot name to the init, or with `all` to every process in the
/// container's cgroup.
fn send_raw(container: &Container, signal: i32, all: bool) -> Result<()> {
    let pids = if all {
        super::cgroup_manager(container)?
            .get_all_pids()
            .context("cannot list the container's processes")?
    } else {
        vec![container.pid().context("the container has no init pid")?]
    };
    for pid in pids {
        send(pid, signal)?;
    }
    Ok(())
}

fn send(pid: Pid, signal: i32) -> Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    if unsafe { libc::kill(pid.as_raw(), signal) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // Gone since the status check: as good as signalled, as libcontainer has it; but 0 asks
        // whether it is there.
        Some(libc::ESRCH) if signal != 0 => Ok(()),
        Some(libc::ESRCH) => bail!("container not running"),
        _ => Err(err).with_context(|| format!("cannot send signal {signal} to process {pid}")),
    }
}
