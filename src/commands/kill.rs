//! `kill`: send a signal (name or number) to a container's init, or with `--all` to all its
//! processes.
//!
//! Like runc, any number up to 64 is a signal: 0 checks that the init is there, and the
//! realtime ones (34-64) are what podman sends to stop a systemd container (SIGRTMIN+3, as a
//! number). libcontainer knows neither, so cdirun sends those itself.
//!
//! A signal to the init alone is always sent by cdirun: libcontainer's kill records the
//! container as stopped after any signal, so a paused container that got SIGTERM was reported
//! running while still frozen, and a later SIGKILL never thawed it.

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
    let mut container = crate::engine::load(&globals.root, id)?;
    let number = parse(&args.signal)?;
    // containerd reads "container not running" as "already stopped", not as a failure.
    if container.status() == ContainerStatus::Stopped && !args.all {
        bail!("cannot signal container {id:?}: container not running");
    }
    let number = match container.status() {
        // runc's init, a Go program, dies of these while it waits for `start`; libcontainer's
        // is pid 1 of its namespace with no handler, so it would ignore them and the container
        // could be neither started nor deleted.
        ContainerStatus::Created if ENDS_A_WAITING_INIT.contains(&number) => libc::SIGKILL,
        _ => number,
    };
    // Rootless without a cgroup, `--all` can only reach the init (and its pid namespace).
    let all = args.all
        && !crate::claims::Record::load(&globals.container_dir(id))
            .ok()
            .flatten()
            .is_some_and(|record| record.no_cgroups);
    match Signal::try_from(number) {
        // libcontainer freezes the cgroup around signalling every process, as runc does.
        Ok(known) if all => container.kill(known, true).map_err(anyhow::Error::from),
        _ => send_raw(&container, number, all),
    }
    .with_context(|| format!("cannot signal container {id:?}"))
}

/// The signals that end a Go program with default handling (HUP, INT, QUIT, ILL, TRAP, ABRT,
/// SYS, TERM).
const ENDS_A_WAITING_INIT: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGSYS,
    libc::SIGTERM,
];

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (0 to 64), as runc takes it.
fn parse(text: &str) -> Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        if (0..=MAX_SIGNAL).contains(&number) {
            return Ok(number);
        }
        bail!("unknown signal {text:?}");
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|signal| signal as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))
}

/// Sends `signal` to the init, or with `all` to every process in the container's cgroup. A
/// frozen process cannot die, so SIGKILL to a paused container's init thaws its cgroup, as runc
/// does (v1: on cgroup v2 the kernel lets a frozen process die of SIGKILL).
fn send_raw(container: &Container, signal: i32, all: bool) -> Result<()> {
    let pids = if all {
        crate::engine::cgroup_manager(container)?
            .get_all_pids()
            .context("cannot list the container's processes")?
    } else {
        vec![container.pid().context("the container has no init pid")?]
    };
    for pid in pids {
        send(pid, signal)?;
    }
    if signal == libc::SIGKILL && container.status() == ContainerStatus::Paused {
        crate::engine::cgroup_manager(container)?
            .freeze(libcgroups::common::FreezerState::Thawed)
            .context("cannot thaw the container's cgroup")?;
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

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn signals_by_name_or_number_as_runc_takes_them() {
        for (text, want) in [
            ("TERM", libc::SIGTERM),
            ("SIGTERM", libc::SIGTERM),
            ("term", libc::SIGTERM),
            ("sigkill", libc::SIGKILL),
            ("9", libc::SIGKILL),
            ("0", 0),
            ("37", 37),
            ("64", 64),
        ] {
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
        for bad in ["65", "-1", "NOPE", "SIG", ""] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("unknown signal"), "{bad}: {err}");
        }
    }
}
