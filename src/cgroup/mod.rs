//! Cgroup hierarchies as this host mounts them (v1, hybrid or v2), the cleanup of the
//! directories a container's cgroupsPath would create, and (in submodules) slice ownership and
//! the scope operations: placement, limits, metrics, kill, removal.

pub mod devices;
pub mod owners;
pub mod scope;
pub mod unit;

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

pub use owners::{CgroupPath, OwnerError, Owners};
pub use scope::{Limits, Scope, ScopeError, Stay};

/// v1 controllers libcontainer's cgroupfs manager places a container in; any other mounted
/// hierarchy (cgroup2 on a hybrid host, named v1 hierarchies such as `name=systemd`) it leaves
/// alone.
pub const LIBCONTAINER_V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// The directory whose presence means systemd runs this host (what `sd_booted(3)` checks).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// How a container's cgroup is named and made: `--systemd-cgroup` and this host's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// cgroupsPath is a path in every hierarchy and cdirun makes the scope.
    #[default]
    Cgroupfs,
    /// `--systemd-cgroup` on a cgroup v2 host: cgroupsPath is `slice:prefix:name` and
    /// libcontainer asks systemd for the scope unit.
    Systemd,
    /// `--systemd-cgroup` on a v1 or hybrid host. libcontainer 0.7 has no systemd driver for v1:
    /// given `slice:prefix:name` it makes a directory of that literal name at the root of each
    /// hierarchy, outside every slice. cdirun lays the cgroup out where systemd puts the unit
    /// (`/<slice>/<prefix>-<name>.scope`) and makes it as a cgroupfs scope.
    SystemdLayout,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--systemd-cgroup: systemd is not running on this host (no {SYSTEMD_RUNNING}); use the cgroupfs driver"
)]
pub struct NoSystemd;

impl Driver {
    /// The driver for this host. As with runc, `--systemd-cgroup` needs a running systemd.
    pub fn for_host(systemd_cgroup: bool, hierarchies: &Hierarchies) -> Result<Self, NoSystemd> {
        if !systemd_cgroup {
            return Ok(Driver::Cgroupfs);
        }
        if !Path::new(SYSTEMD_RUNNING).is_dir() {
            return Err(NoSystemd);
        }
        Ok(match hierarchies.layout() {
            Some(Layout::V2) => Driver::Systemd,
            _ => Driver::SystemdLayout,
        })
    }

    /// Whether libcontainer is to use its systemd manager.
    pub fn is_systemd(self) -> bool {
        self == Driver::Systemd
    }
}

/// What kind of cgroup filesystem a mount point is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A v1 hierarchy and the controllers (or `name=...`) bound to it.
    V1 {
        controllers: Vec<String>,
    },
    V2,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub kind: Kind,
}

impl Hierarchy {
    #[cfg(test)]
    pub fn v1(mount: impl Into<PathBuf>, controllers: &[&str]) -> Self {
        Self {
            mount: mount.into(),
            kind: Kind::V1 {
                controllers: controllers.iter().map(|c| c.to_string()).collect(),
            },
        }
    }

    #[cfg(test)]
    pub fn v2(mount: impl Into<PathBuf>) -> Self {
        Self {
            mount: mount.into(),
            kind: Kind::V2,
        }
    }

    /// A v1 hierarchy with `controller` bound to it.
    pub fn has_v1(&self, controller: &str) -> bool {
        matches!(&self.kind, Kind::V1 { controllers } if controllers.iter().any(|c| c == controller))
    }

    pub fn is_v2(&self) -> bool {
        self.kind == Kind::V2
    }

    /// `<mount>/<path>`.
    pub fn dir(&self, path: &CgroupPath) -> PathBuf {
        self.mount.join(path.relative())
    }
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1,
    Hybrid,
    V2,
}

/// Every mounted cgroup hierarchy of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies(pub Vec<Hierarchy>);

impl Hierarchies {
    /// Reads `/proc/self/mountinfo`.
    pub fn discover() -> io::Result<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        Ok(Self(parse_mountinfo(&mountinfo)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Hierarchy> {
        self.0.iter()
    }

    pub fn layout(&self) -> Option<Layout> {
        let v1 = self.0.iter().any(|h| !h.is_v2());
        let v2 = self.0.iter().any(Hierarchy::is_v2);
        match (v1, v2) {
            (true, true) => Some(Layout::Hybrid),
            (true, false) => Some(Layout::V1),
            (false, true) => Some(Layout::V2),
            (false, false) => None,
        }
    }

    /// The hierarchies libcontainer's cgroupfs manager does not place a container in: on v1
    /// and hybrid hosts it uses only the v1 controllers it knows, so the cgroup2 mount and
    /// named v1 hierarchies are left to cdirun. On a pure v2 host it handles everything.
    pub fn not_managed_by_libcontainer(&self) -> Vec<&Hierarchy> {
        if self.layout() == Some(Layout::V2) {
            return Vec::new();
        }
        self.0
            .iter()
            .filter(|h| {
                !LIBCONTAINER_V1_CONTROLLERS
                    .iter()
                    .any(|controller| h.has_v1(controller))
            })
            .collect()
    }

    pub fn mounts(&self) -> Vec<PathBuf> {
        self.0.iter().map(|h| h.mount.clone()).collect()
    }
}

/// Picks cgroup and cgroup2 mounts out of `/proc/self/mountinfo` text (first mount of a mount
/// point wins).
pub fn parse_mountinfo(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> <source> <super opts>"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split_whitespace();
        let fstype = right.next();
        let super_opts = right.nth(1).unwrap_or("");
        let kind = match fstype {
            Some("cgroup2") => Kind::V2,
            Some("cgroup") => Kind::V1 {
                controllers: super_opts
                    .split(',')
                    .filter(|opt| {
                        !matches!(*opt, "rw" | "ro" | "noprefix" | "xattr" | "clone_children")
                            && (!opt.contains('=') || opt.starts_with("name="))
                    })
                    .map(str::to_owned)
                    .collect(),
            },
            _ => continue,
        };
        let Some(mount) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mount = PathBuf::from(unescape_octal(mount));
        if !found.iter().any(|h| h.mount == mount) {
            found.push(Hierarchy { mount, kind });
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN`.
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.clone().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&code, 8) {
                out.push(byte as char);
                chars.nth(2);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The directories a cgroupfs `cgroups_path` names in each hierarchy that do not exist yet,
/// shallowest first. Taken before a create, they are exactly what a failed create must remove.
pub fn missing_dirs(hierarchies: &[PathBuf], cgroups_path: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    for root in hierarchies {
        let mut dir = root.clone();
        for component in cgroups_path.components() {
            if let Component::Normal(name) = component {
                dir.push(name);
                if !dir.exists() {
                    missing.push(dir.clone());
                }
            }
        }
    }
    missing
}

/// Removes `dirs` deepest first, skipping ones already gone. A cgroup directory is removed with
/// rmdir (its control files are not real files); a busy one is retried briefly (killed
/// processes take a moment to leave), then left and reported.
pub fn remove_dirs(dirs: &[PathBuf]) -> Vec<(PathBuf, io::Error)> {
    let mut sorted: Vec<&PathBuf> = dirs.iter().collect();
    sorted.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    sorted
        .into_iter()
        .filter_map(|dir| match scope::remove_dir_retrying(dir) {
            Ok(()) => None,
            Err(ScopeError::Remove { dir, cause }) => Some((dir, cause)),
            Err(other) => Some((dir.clone(), io::Error::other(other.to_string()))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/odd\\040name rw - cgroup cgroup rw,name=odd
";

    #[test]
    fn hierarchies_from_hybrid_mountinfo() {
        assert_eq!(
            Hierarchies(parse_mountinfo(HYBRID)).mounts(),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/odd name"),
            ]
        );
    }

    #[test]
    fn hierarchy_kinds_and_what_libcontainer_leaves_to_cdirun() {
        let text = format!(
            "{HYBRID}40 30 0:37 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             41 30 0:37 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        );
        let found = Hierarchies(parse_mountinfo(&text));
        assert_eq!(
            found.0,
            vec![
                Hierarchy::v2("/sys/fs/cgroup/unified"),
                Hierarchy::v1("/sys/fs/cgroup/memory", &["memory"]),
                Hierarchy::v1("/sys/fs/cgroup/odd name", &["name=odd"]),
                Hierarchy::v1("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            ]
        );
        assert_eq!(found.layout(), Some(Layout::Hybrid));
        let left: Vec<&Path> = found
            .not_managed_by_libcontainer()
            .into_iter()
            .map(|h| h.mount.as_path())
            .collect();
        assert_eq!(
            left,
            [
                Path::new("/sys/fs/cgroup/unified"),
                Path::new("/sys/fs/cgroup/odd name")
            ]
        );
        let pure_v2 = Hierarchies(vec![Hierarchy::v2("/sys/fs/cgroup")]);
        assert_eq!(pure_v2.layout(), Some(Layout::V2));
        assert!(pure_v2.not_managed_by_libcontainer().is_empty());
    }

    #[test]
    fn missing_dirs_then_remove_leaves_the_tree_as_it_was() {
        let tree = tempfile::tempdir().unwrap();
        let roots = vec![tree.path().join("memory"), tree.path().join("pids")];
        for root in &roots {
            fs::create_dir_all(root.join("existing")).unwrap();
        }
        let missing = missing_dirs(&roots, Path::new("/existing/new/c1"));
        assert_eq!(
            missing,
            vec![
                roots[0].join("existing/new"),
                roots[0].join("existing/new/c1"),
                roots[1].join("existing/new"),
                roots[1].join("existing/new/c1"),
            ]
        );
        for dir in &missing {
            fs::create_dir_all(dir).unwrap();
        }
        assert!(remove_dirs(&missing).is_empty());
        for root in &roots {
            assert!(root.join("existing").exists());
            assert!(!root.join("existing/new").exists());
        }
    }
}
