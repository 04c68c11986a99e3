//! `state`: print a container's OCI state as runc does.

use anyhow::Result;

use super::Globals;
use super::list::Summary;

pub fn state(args: liboci_cli::State, globals: &Globals) -> Result<()> {
    let container = crate::engine::load(&globals.root, &args.container_id)?;
    let text = serde_json::to_string_pretty(&Summary::of(&container))?;
    super::print(&format!("{text}\n"))?;
    Ok(())
}
