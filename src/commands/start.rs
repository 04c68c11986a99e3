//! `start`: let a created container's init exec the user process.

use anyhow::{Context, Result};
use libcontainer::container::ContainerStatus;

use super::Globals;

pub fn start(args: liboci_cli::Start, globals: &Globals) -> Result<()> {
    let mut container = crate::engine::load(&globals.root, &args.container_id)?;
    let reason = match container.status() {
        ContainerStatus::Running | ContainerStatus::Paused => "it was started already",
        ContainerStatus::Stopped => "it ran already",
        _ => "it is not created",
    };
    super::require_status(&container, &[ContainerStatus::Created], "start", reason)?;
    crate::engine::late_hooks::start(&mut container)
        .with_context(|| format!("cannot start container {:?}", args.container_id))
}
