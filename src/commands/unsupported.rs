//! Verbs cdirun does not implement (`checkpoint`, `restore`): a clear error and a non-zero exit,
//! including for `--help`, which podman uses to probe for checkpoint support.

use anyhow::{Result, bail};

pub fn unsupported(verb: &str) -> Result<()> {
    bail!("{verb} is not supported by cdirun (no CRIU integration)")
}
