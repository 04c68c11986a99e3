//! `start`: let a created container's init exec the user process.

use anyhow::{Context, Result};

use super::Globals;

pub fn start(args: liboci_cli::Start, globals: &Globals) -> Result<()> {
    let mut container = super::load_container(globals, &args.container_id)?;
    crate::late_hooks::start(&mut container)
        .with_context(|| format!("cannot start container {:?}", args.container_id))
}
