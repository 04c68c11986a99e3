//! `resume`: thaw a paused container.

use anyhow::{Context, Result};
use libcontainer::container::ContainerStatus;

use super::Globals;

pub fn resume(args: liboci_cli::Resume, globals: &Globals) -> Result<()> {
    let mut container = crate::engine::load(&globals.root, &args.container_id)?;
    super::require_status(
        &container,
        &[ContainerStatus::Paused],
        "resume",
        "container not paused",
    )?;
    container
        .resume()
        .with_context(|| format!("cannot resume container {:?}", args.container_id))
}
