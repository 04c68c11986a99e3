//! podman's containers.conf: the runtime's path under `[engine.runtimes]`.

use std::path::Path;

use super::tables::{parse_toml, set, table_at};
use super::{InstallError, Runtime, binary_text};

/// containers.conf: `[engine.runtimes] <name> = ["<binary>"]`.
pub(super) fn podman(text: &str, runtime: &Runtime, path: &Path) -> Result<String, InstallError> {
    let mut doc = parse_toml(text, path)?;
    let runtimes = table_at(doc.as_table_mut(), &["engine", "runtimes"], path)?;
    let mut paths = toml_edit::Array::new();
    paths.push(binary_text(runtime));
    set(runtimes, &runtime.name, paths.into());
    Ok(doc.to_string())
}
