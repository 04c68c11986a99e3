//! Rootless operation: whether cdirun runs without the host's root, where its state goes then,
//! and whether the cgroups it would use are delegated to it.
//!
//! Rootless means an effective uid other than 0, or a user namespace whose uid 0 is not the
//! host's (podman rootless runs the runtime as root of the user's namespace). `--rootless true`
//! forces it and `--rootless false` denies it, as with runc; `auto` (or no flag) detects.
//! Rootless, `--root` defaults to `$XDG_RUNTIME_DIR/cdirun` (runc uses `$XDG_RUNTIME_DIR/runc`)
//! and the default `state-dir` to `$XDG_RUNTIME_DIR/cdirun-state`. cdirun never touches a
//! cgroup the caller cannot write: without a delegated slice, cgroup setup is skipped as runc
//! and crun skip it.
//!
//! The delegation check and the hiding of the host's cgroups from libcontainer's v1 manager
//! are in `cgroups`; the `newuidmap`/`newgidmap` stand-ins for root of a user namespace are in
//! `idmap`.

use std::path::PathBuf;

mod cgroups;
mod idmap;

pub use cgroups::{cgroups_hidden, delegated, fake_cgroup, hide_cgroups};
pub use idmap::{IdMapHelpers, id_map_helper};

/// What the process env and `--rootless` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rootful,
    Rootless,
}

#[derive(Debug, thiserror::Error)]
#[error("--rootless {value:?}: use true, false or auto")]
pub struct BadFlag {
    value: String,
}

/// The mode for this process: `--rootless` if given (`true`, `false`, `auto`), else detected.
pub fn mode(flag: Option<&str>) -> Result<Mode, BadFlag> {
    match flag {
        Some("true") => Ok(Mode::Rootless),
        Some("false") => Ok(Mode::Rootful),
        None | Some("auto") => Ok(detect()),
        Some(other) => Err(BadFlag {
            value: other.to_owned(),
        }),
    }
}

/// Rootless when the effective uid is not 0, or when uid 0 here is not the host's root (a user
/// namespace that does not map the whole uid range onto itself).
pub fn detect() -> Mode {
    if !nix::unistd::geteuid().is_root() {
        return Mode::Rootless;
    }
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) if !is_initial_uid_map(&map) => Mode::Rootless,
        _ => Mode::Rootful,
    }
}

/// The initial user namespace maps every uid onto itself: `0 0 4294967295`.
fn is_initial_uid_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|line| line.split_whitespace().collect())
        .filter(|fields: &Vec<&str>| !fields.is_empty())
        .collect();
    matches!(lines.as_slice(), [fields] if fields[..] == ["0", "0", "4294967295"])
}

/// `$XDG_RUNTIME_DIR`, when it is set to an absolute path.
pub fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
}

/// The default `--root` in `mode`.
pub fn default_root(mode: Mode) -> PathBuf {
    match (mode, runtime_dir()) {
        (Mode::Rootless, Some(dir)) => dir.join("cdirun"),
        _ => PathBuf::from(crate::commands::DEFAULT_ROOT),
    }
}

/// The default `state-dir` rootless, next to the default root.
pub fn default_state_dir() -> Option<PathBuf> {
    runtime_dir().map(|dir| dir.join("cdirun-state"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_maps_table() {
        let cases = [
            ("         0          0 4294967295\n", true),
            ("0 0 4294967295", true),
            ("         0       1000          1\n", false),
            ("0 1000 1\n1 100000 65536\n", false),
            ("0 0 65536\n", false),
            ("", false),
        ];
        for (map, want) in cases {
            assert_eq!(is_initial_uid_map(map), want, "{map:?}");
        }
    }

    #[test]
    fn flag_values() {
        assert_eq!(mode(Some("true")).unwrap(), Mode::Rootless);
        assert_eq!(mode(Some("false")).unwrap(), Mode::Rootful);
        assert!(
            mode(Some("yes"))
                .unwrap_err()
                .to_string()
                .contains("\"yes\"")
        );
    }
}
