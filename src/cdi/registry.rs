//! The devices of every spec file in the spec dirs, indexed by qualified name.
//!
//! Dirs are given lowest priority first; a later dir overrides an earlier one. Only `*.json` and
//! `*.yaml` files directly in a dir are read. A broken file is reported and skipped, and so is an
//! entry with such a name that is no regular file (a directory, a dangling link, a FIFO: never
//! opened, a FIFO would block the read); a device defined twice at the same priority is dropped
//! and the conflict reported. Nothing here fails: problems are collected for `cdi list`,
//! `cdi validate` and the resolution error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::spec::{self, Device, Spec, SpecError};

/// One loaded, valid spec file.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    /// Index of its dir in the dir list: higher wins.
    pub priority: usize,
    pub spec: Spec,
}

/// Something the scan skipped.
#[derive(Debug)]
pub enum LoadProblem {
    /// A spec dir that exists but cannot be listed.
    Dir { dir: PathBuf, cause: std::io::Error },
    /// A spec file that cannot be read, parsed or validated.
    Spec(SpecError),
    /// An entry named like a spec file that is not a regular file.
    NotAFile(NotAFile),
    /// A device defined by several files at the same priority: no definition is used.
    Conflict { device: String, paths: Vec<PathBuf> },
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadProblem::Dir { dir, cause } => {
                write!(f, "cannot list CDI spec dir {}: {cause}", dir.display())
            }
            LoadProblem::Spec(err) => write!(f, "skipped {err}"),
            LoadProblem::NotAFile(err) => write!(f, "skipped {err}"),
            LoadProblem::Conflict { device, paths } => {
                let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "conflicting definitions of CDI device {device} at the same priority in {}: none is used",
                    paths.join(", ")
                )
            }
        }
    }
}

/// Where a device is defined: indices into [`Registry::specs`] and its spec's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRef {
    pub spec: usize,
    pub device: usize,
}

#[derive(Debug, Default)]
pub struct Registry {
    pub dirs: Vec<PathBuf>,
    pub specs: Vec<LoadedSpec>,
    /// Qualified name -> definition, conflicts removed.
    pub devices: BTreeMap<String, DeviceRef>,
    pub problems: Vec<LoadProblem>,
}

/// A path named as a spec file that is no regular file, even after following links.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: {what}, not a regular file; remove or rename it (CDI specs are regular *.json and *.yaml files)",
    .path.display()
)]
pub struct NotAFile {
    pub path: PathBuf,
    /// `a directory`, `a FIFO`, `a symbolic link to /x, which does not exist`, ...
    pub what: String,
}

/// Refuses a path that is not a regular file after links, looking only at its metadata: a FIFO
/// is never opened. A path that cannot be examined at all passes, and reading it reports why.
pub fn check_regular(path: &Path) -> Result<(), NotAFile> {
    let not_a_file = |what: String| NotAFile {
        path: path.to_owned(),
        what,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(cause) => {
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                return Ok(());
            }
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            let reason = match cause.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_owned(),
                _ => format!("cannot be followed ({cause})"),
            };
            return Err(not_a_file(format!(
                "a symbolic link to {target}, which {reason}"
            )));
        }
    };
    if metadata.is_file() {
        return Ok(());
    }
    Err(not_a_file(
        crate::bundle::files::kind(&metadata.file_type()).to_owned(),
    ))
}

/// What one spec dir holds under spec file names.
#[derive(Debug, Default)]
pub struct Listing {
    /// Regular files (after links), by file name.
    pub files: Vec<PathBuf>,
    /// Entries named like spec files that are not regular files, by file name.
    pub not_files: Vec<NotAFile>,
}

/// The spec files directly in `dir`, by file name; a missing dir has none.
pub fn spec_files(dir: &Path) -> Result<Listing, std::io::Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
        Err(err) => return Err(err),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        // Follows links, as the reference library does; subdirectories are not searched.
        if spec::is_spec_file(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    let mut listing = Listing::default();
    for path in paths {
        match check_regular(&path) {
            Ok(()) => listing.files.push(path),
            Err(not_a_file) => listing.not_files.push(not_a_file),
        }
    }
    Ok(listing)
}

impl Registry {
    /// Scans `dirs` (lowest priority first).
    pub fn load(dirs: &[PathBuf]) -> Self {
        let mut registry = Registry {
            dirs: dirs.to_vec(),
            ..Self::default()
        };
        for (priority, dir) in dirs.iter().enumerate() {
            let listing = match spec_files(dir) {
                Ok(listing) => listing,
                Err(cause) => {
                    registry.problems.push(LoadProblem::Dir {
                        dir: dir.clone(),
                        cause,
                    });
                    continue;
                }
            };
            registry
                .problems
                .extend(listing.not_files.into_iter().map(LoadProblem::NotAFile));
            for path in listing.files {
                match spec::load(&path) {
                    Ok(spec) => registry.specs.push(LoadedSpec {
                        path,
                        priority,
                        spec,
                    }),
                    Err(err) => registry.problems.push(LoadProblem::Spec(err)),
                }
            }
        }
        registry.index();
        registry
    }

    fn index(&mut self) {
        let mut conflicts: BTreeMap<String, BTreeSet<PathBuf>> = BTreeMap::new();
        for (s, loaded) in self.specs.iter().enumerate() {
            for (d, device) in loaded.spec.devices.iter().enumerate() {
                let qualified = format!("{}={}", loaded.spec.kind, device.name);
                let new = DeviceRef { spec: s, device: d };
                match self.devices.get(&qualified) {
                    Some(old) if self.specs[old.spec].priority == loaded.priority => {
                        let paths = conflicts.entry(qualified).or_default();
                        paths.insert(self.specs[old.spec].path.clone());
                        paths.insert(loaded.path.clone());
                    }
                    // Scanned lowest priority first: a later dir overrides.
                    _ => {
                        self.devices.insert(qualified, new);
                    }
                }
            }
        }
        // As in the reference library, a conflicting name is dropped after the whole scan, even
        // if a higher-priority dir also defines it: a half-broken setup must be fixed, not guessed.
        for (device, paths) in conflicts {
            self.devices.remove(&device);
            self.problems.push(LoadProblem::Conflict {
                device,
                paths: paths.into_iter().collect(),
            });
        }
    }

    /// The spec file and device definition of a qualified name.
    pub fn get(&self, qualified: &str) -> Option<(&LoadedSpec, &Device)> {
        let r = self.devices.get(qualified)?;
        let loaded = &self.specs[r.spec];
        Some((loaded, &loaded.spec.devices[r.device]))
    }

    pub fn device_ref(&self, qualified: &str) -> Option<DeviceRef> {
        self.devices.get(qualified).copied()
    }

    /// Qualified names of every usable device of `kind`, in natural order (`2` before `10`).
    pub fn devices_of_kind(&self, kind: &str) -> Vec<String> {
        let prefix = format!("{kind}=");
        let mut names: Vec<&str> = self
            .devices
            .keys()
            .filter_map(|q| q.strip_prefix(&prefix))
            .collect();
        names.sort_by(|a, b| natural(a).cmp(&natural(b)));
        names.into_iter().map(|n| format!("{prefix}{n}")).collect()
    }

    /// Finds the device of `kind` a vendor selector (a device name, index or UUID) means: the
    /// device of that name, else the one device with an annotation ending in `uuid` equal to it.
    pub fn find_in_kind(&self, kind: &str, selector: &str) -> Option<String> {
        let exact = format!("{kind}={selector}");
        if self.devices.contains_key(&exact) {
            return Some(exact);
        }
        let mut by_uuid = self.devices_of_kind(kind).into_iter().filter(|q| {
            self.get(q).is_some_and(|(_, device)| {
                device.annotations.iter().any(|(key, value)| {
                    key.to_ascii_lowercase().ends_with("uuid")
                        && value.eq_ignore_ascii_case(selector)
                })
            })
        });
        match (by_uuid.next(), by_uuid.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

/// Sort key: names that are numbers first, by value, then the rest by text.
fn natural(name: &str) -> (u8, u64, &str) {
    match name.parse::<u64>() {
        Ok(n) => (0, n, name),
        Err(_) => (1, 0, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_text(kind: &str, devices: &[&str]) -> String {
        let devices: Vec<String> = devices
            .iter()
            .map(|d| format!("{{name: \"{d}\", containerEdits: {{env: [\"DEV_{d}=1\"]}}}}"))
            .collect();
        format!(
            "cdiVersion: 0.6.0\nkind: {kind}\ndevices: [{}]\n",
            devices.join(", ")
        )
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn keys(r: &Registry) -> Vec<&str> {
        r.devices.keys().map(String::as_str).collect()
    }

    #[test]
    fn later_dir_wins_and_json_yaml_both_load() {
        let low = tempfile::tempdir().unwrap();
        let high = tempfile::tempdir().unwrap();
        write(low.path(), "a.yaml", &spec_text("v.com/gpu", &["0", "1"]));
        write(
            high.path(),
            "b.json",
            r#"{"cdiVersion":"0.6.0","kind":"v.com/gpu","devices":[{"name":"1","containerEdits":{"env":["HIGH=1"]}}]}"#,
        );
        let r = Registry::load(&[low.path().into(), high.path().into()]);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(keys(&r), ["v.com/gpu=0", "v.com/gpu=1"]);
        let (spec, device) = r.get("v.com/gpu=1").unwrap();
        assert_eq!(spec.path, high.path().join("b.json"));
        assert_eq!(device.container_edits.env, ["HIGH=1"]);
    }

    #[test]
    fn same_priority_conflict_is_dropped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let high = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &spec_text("v.com/gpu", &["0", "1"]));
        write(dir.path(), "b.yaml", &spec_text("v.com/gpu", &["1"]));
        // Even a higher-priority definition does not bring a conflicting name back.
        write(high.path(), "c.yaml", &spec_text("v.com/gpu", &["1"]));
        let r = Registry::load(&[dir.path().into(), high.path().into()]);
        assert_eq!(keys(&r), ["v.com/gpu=0"]);
        assert_eq!(r.problems.len(), 1);
        let msg = r.problems[0].to_string();
        assert!(msg.contains("v.com/gpu=1"), "{msg}");
        assert!(msg.contains("a.yaml") && msg.contains("b.yaml"), "{msg}");
    }

    #[test]
    fn broken_files_are_reported_and_skipped_and_subdirs_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0-broken.yaml", "cdiVersion: [\n");
        write(
            dir.path(),
            "1-invalid.json",
            r#"{"cdiVersion":"0.6.0","kind":"v.com/gpu","devices":[]}"#,
        );
        write(dir.path(), "2-good.yaml", &spec_text("v.com/gpu", &["0"]));
        write(dir.path(), "notes.txt", "not a spec");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(
            &dir.path().join("sub"),
            "x.yaml",
            &spec_text("v.com/gpu", &["9"]),
        );
        let r = Registry::load(&[dir.path().into(), "/nonexistent/cdi".into()]);
        assert_eq!(keys(&r), ["v.com/gpu=0"]);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].to_string().contains("0-broken.yaml"));
        assert!(r.problems[1].to_string().contains("1-invalid.json"));
    }

    #[test]
    fn entries_that_are_not_regular_files_are_named_and_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "good.yaml", &spec_text("v.com/gpu", &["0"]));
        std::os::unix::fs::symlink(d.join("good.yaml"), d.join("link.yaml")).unwrap();
        std::fs::create_dir(d.join("a-dir.json")).unwrap();
        std::os::unix::fs::symlink(d.join("gone.yaml"), d.join("dangling.yaml")).unwrap();
        nix::unistd::mkfifo(
            &d.join("fifo.yaml"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::create_dir(d.join("plain-subdir")).unwrap();
        // On a thread: opening the FIFO would block forever.
        let dirs = vec![d.to_path_buf()];
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(Registry::load(&dirs)).unwrap());
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("loading the spec dir blocked");
        // The link to a good spec is one too; its device is defined twice at one priority.
        assert_eq!(r.specs.len(), 2);
        let problems: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        let named = |file: &str, what: &str| {
            format!(
                "skipped {}: {what}, not a regular file; remove or rename it",
                d.join(file).display()
            )
        };
        let want = [
            named("a-dir.json", "a directory"),
            named(
                "dangling.yaml",
                &format!(
                    "a symbolic link to {}, which does not exist",
                    d.join("gone.yaml").display()
                ),
            ),
            named("fifo.yaml", "a FIFO"),
        ];
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (got, want) in problems.iter().zip(&want) {
            assert!(
                got.starts_with(want.as_str()),
                "{got:?} does not start with {want:?}"
            );
        }
        assert!(
            problems[3].contains("conflicting definitions"),
            "{problems:?}"
        );
        assert!(check_regular(&d.join("good.yaml")).is_ok());
        assert!(
            check_regular(&d.join("no-such.yaml")).is_ok(),
            "reading says why"
        );
    }

    #[test]
    fn kind_lookup_is_natural_and_finds_uuids() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            &spec_text("v.com/gpu", &["10", "2", "all-x", "1"]),
        );
        write(
            dir.path(),
            "u.yaml",
            "cdiVersion: 0.6.0\nkind: u.com/gpu\ndevices: [{name: card0, annotations: {gpu.uuid: GPU-abc}, containerEdits: {env: [A=1]}}]\n",
        );
        let r = Registry::load(&[dir.path().into()]);
        assert_eq!(
            r.devices_of_kind("v.com/gpu"),
            [
                "v.com/gpu=1",
                "v.com/gpu=2",
                "v.com/gpu=10",
                "v.com/gpu=all-x"
            ]
        );
        assert_eq!(
            r.find_in_kind("v.com/gpu", "2").as_deref(),
            Some("v.com/gpu=2")
        );
        assert_eq!(
            r.find_in_kind("u.com/gpu", "GPU-ABC").as_deref(),
            Some("u.com/gpu=card0")
        );
        assert_eq!(r.find_in_kind("u.com/gpu", "GPU-x"), None);
    }

    /// Regression: a spec file the reference library loads (a `v` before its version, a node
    /// with `major: -1`) was refused, and every device in it was gone.
    #[test]
    fn a_file_the_reference_library_accepts_loads_with_all_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "nvidia.yaml",
            "cdiVersion: v0.5.0\nkind: nvidia.com/gpu\ndevices:\n\
             - name: \"0\"\n  containerEdits:\n    deviceNodes:\n\
             \x20   - {path: /dev/nvidia0, type: c, major: -1, minor: 0}\n\
             - name: \"1\"\n  containerEdits: {env: [A=1]}\n",
        );
        let r = Registry::load(&[dir.path().into()]);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(keys(&r), ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]);
    }
}
