//! The driver check: the loaded NVIDIA driver's version against the driver libraries each
//! NVIDIA spec mounts.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Check, fail, ok, warn};
use crate::cdi::Registry;
use crate::cdi::generate::Host;

/// Whether `name` is a library named for a driver version (`libcuda.so.550.54.14`): the
/// version after `.so.`.
fn library_version(name: &str) -> Option<&str> {
    let (_, version) = name.split_once(".so.")?;
    let parts: Vec<&str> = version.split('.').collect();
    (parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then_some(version)
}

/// The loaded NVIDIA driver against the driver libraries the NVIDIA specs mount.
pub(super) fn driver(host: &Host, registry: &Registry) -> Vec<Check> {
    let nvidia: Vec<_> = registry
        .specs
        .iter()
        .filter(|s| s.spec.kind == crate::request::NVIDIA_KIND)
        .collect();
    if nvidia.is_empty() {
        return Vec::new();
    }
    let loaded = match crate::cdi::generate::nvidia::driver_version(host) {
        Ok(version) => version,
        Err(err) => {
            return vec![warn(
                "driver",
                format!("NVIDIA specs are installed but the driver version is unknown: {err}"),
                "load the nvidia kernel module, or remove the NVIDIA specs from this node",
            )];
        }
    };
    let mut checks = Vec::new();
    for spec in nvidia {
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let edits = spec
            .spec
            .container_edits
            .iter()
            .chain(spec.spec.devices.iter().map(|d| &d.container_edits));
        for edit in edits {
            for mount in &edit.mounts {
                let name = Path::new(&mount.container_path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(version) = library_version(&name) {
                    versions
                        .entry(version.to_owned())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
        let others: Vec<String> = versions
            .iter()
            .filter(|(v, _)| **v != loaded)
            .map(|(v, libs)| format!("{} ({v})", libs.join(", ")))
            .collect();
        if !others.is_empty() {
            checks.push(fail(
                "driver",
                format!(
                    "{}: driver {loaded} is loaded, but the spec mounts {}",
                    spec.path.display(),
                    others.join("; ")
                ),
                format!(
                    "regenerate the spec: cdirun cdi generate --vendor nvidia -o {}",
                    spec.path.display()
                ),
            ));
        } else if versions.is_empty() {
            checks.push(warn(
                "driver",
                format!("{}: driver {loaded} is loaded, but the spec mounts no driver library", spec.path.display()),
                "regenerate the spec after the driver's libraries are in the linker cache (ldconfig)",
            ));
        } else {
            checks.push(ok(
                "driver",
                format!("{}: libraries match driver {loaded}", spec.path.display()),
            ));
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_versions() {
        assert_eq!(library_version("libcuda.so.550.54.14"), Some("550.54.14"));
        assert_eq!(library_version("libnvidia-ml.so.470.82"), Some("470.82"));
        assert_eq!(library_version("libcuda.so.1"), None);
        assert_eq!(library_version("nvidia-smi"), None);
        assert_eq!(library_version("libx.so.1.a"), None);
    }
}
