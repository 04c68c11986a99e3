//! `cdi list`: the CDI devices in the configured spec dirs, by kind, with the file of each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;

use crate::cdi::Registry;
use crate::config::{self, Config};

pub fn list() -> Result<()> {
    let loaded = Config::load(std::env::var_os(config::ENV_VAR).as_deref())?;
    let registry = Registry::load(&loaded.config.cdi.spec_dirs);
    for problem in &registry.problems {
        super::print_err(&format!("cdirun: warning: {problem}"));
    }
    let mut kinds: BTreeMap<&str, ()> = BTreeMap::new();
    for loaded in &registry.specs {
        kinds.insert(&loaded.spec.kind, ());
    }
    let mut out = String::new();
    let mut any = false;
    for kind in kinds.keys() {
        let devices = registry.devices_of_kind(kind);
        if devices.is_empty() {
            continue;
        }
        any = true;
        writeln!(out, "{kind}")?;
        let width = devices.iter().map(String::len).max().unwrap_or(0);
        for name in devices {
            if let Some((spec, _)) = registry.get(&name) {
                writeln!(out, "  {name:width$}  {}", spec.path.display())?;
            }
        }
    }
    if !any {
        let dirs: Vec<String> = registry
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        writeln!(out, "no CDI devices in {}", dirs.join(", "))?;
    }
    super::print(&out)?;
    Ok(())
}
