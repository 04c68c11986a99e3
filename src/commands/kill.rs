//! `kill`: send a signal (name or number) to a container's init, or with `--all` to all its
//! processes.

use anyhow::{Context, Result, bail};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use super::Globals;

pub fn kill(args: liboci_cli::Kill, globals: &Globals) -> Result<()> {
    let mut container = super::load_container(globals, &args.container_id)?;
    let signal = Signal::try_from(args.signal.as_str())
        .map_err(|_| anyhow::anyhow!("unknown signal {:?}", args.signal))?;
    if container.status() == ContainerStatus::Stopped && !args.all {
        bail!("container {:?} is not running", args.container_id);
    }
    container
        .kill(signal, args.all)
        .with_context(|| format!("cannot signal container {:?}", args.container_id))
}
