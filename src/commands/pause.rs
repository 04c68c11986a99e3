//! `pause`: freeze every process of a container.

use anyhow::{Context, Result};
use libcontainer::container::ContainerStatus;

use super::Globals;

pub fn pause(args: liboci_cli::Pause, globals: &Globals) -> Result<()> {
    let mut container = crate::engine::load(&globals.root, &args.container_id)?;
    super::require_status(
        &container,
        &[ContainerStatus::Running],
        "pause",
        "container not running",
    )?;
    container
        .pause()
        .with_context(|| format!("cannot pause container {:?}", args.container_id))
}
