//! Slice ownership: normalized cgroup paths, systemd slice unit names, and the owners table that
//! says which owner a path belongs to (by whole path component, never by string prefix).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Sub-slices the default hierarchy gives a top-level slice, in systemd naming
/// (`pact.slice` → `pact.slice/pact-infra.slice`, ...).
pub const SUB_SLICES: &[(&str, &[&str])] = &[("pact.slice", &["infra", "network", "gpu", "audit"])];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OwnerError {
    #[error("cgroup path {path:?} contains \"..\"; a container may not leave its slice")]
    DotDot { path: String },
    #[error("cgroup path {path:?} contains a NUL byte")]
    Nul { path: String },
    #[error("[slices.owners] {owner} lists {root:?}, which is not a slice below the cgroup root")]
    BadRoot { owner: String, root: String },
    #[error("[slices.owners] gives {root:?} to both {first:?} and {second:?}")]
    SharedRoot {
        root: String,
        first: String,
        second: String,
    },
    #[error("owner {owner:?} (config `owner`) has no slices in [slices.owners]")]
    UnknownOwner { owner: String },
}

/// A cgroup path as a list of components below the cgroup root: no `.`, no `..`, no empty parts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CgroupPath(Vec<String>);

impl CgroupPath {
    /// Parses `/a/b`, `a/b` or `a//b/` (all the same path); refuses `..` and NUL.
    pub fn parse(text: &str) -> Result<Self, OwnerError> {
        if text.contains('\0') {
            return Err(OwnerError::Nul { path: text.into() });
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(OwnerError::DotDot { path: text.into() }),
                name => parts.push(name.to_owned()),
            }
        }
        Ok(Self(parts))
    }

    /// A slice given as a systemd unit name (`pact-gpu.slice`) or as a path (`pact.slice/x`).
    /// A unit name expands as systemd nests it: `a-b.slice` → `a.slice/a-b.slice`.
    pub fn parse_slice(text: &str) -> Result<Self, OwnerError> {
        if !text.contains('/') {
            if let Some(path) = expand_slice_unit(text) {
                return Ok(path);
            }
        }
        Self::parse(text)
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Component-wise prefix test: `workload.slice` is a prefix of `workload.slice/x` but not
    /// of `workload.slice-extra`.
    pub fn starts_with(&self, prefix: &CgroupPath) -> bool {
        self.0.len() >= prefix.0.len() && self.0[..prefix.0.len()] == prefix.0[..]
    }

    pub fn join(&self, rest: &CgroupPath) -> Self {
        Self(self.0.iter().chain(&rest.0).cloned().collect())
    }

    pub fn child(&self, name: &str) -> Self {
        let mut parts = self.0.clone();
        parts.push(name.to_owned());
        Self(parts)
    }

    /// Every path above this one, root excluded, nearest first (`/a/b/c` → `/a/b`, `/a`).
    pub fn ancestors(&self) -> Vec<CgroupPath> {
        (1..self.0.len())
            .rev()
            .map(|len| Self(self.0[..len].to_vec()))
            .collect()
    }

    pub fn last(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// Relative form, for joining under a hierarchy's mount point.
    pub fn relative(&self) -> PathBuf {
        self.0.iter().collect()
    }

    /// Absolute form, as a cgroupfs `cgroupsPath`.
    pub fn absolute(&self) -> PathBuf {
        PathBuf::from(self.to_string())
    }

    /// The systemd unit name of this slice, when the path is exactly how systemd nests that unit
    /// (`pact.slice/pact-gpu.slice` → `pact-gpu.slice`).
    pub fn slice_unit(&self) -> Option<String> {
        let last = self.last()?;
        (expand_slice_unit(last).as_ref() == Some(self)).then(|| last.to_owned())
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for part in &self.0 {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

/// systemd's slice nesting: `a-b-c.slice` lives at `a.slice/a-b.slice/a-b-c.slice`; `-.slice` is
/// the root. `None` when `name` is not a valid slice unit name.
pub fn expand_slice_unit(name: &str) -> Option<CgroupPath> {
    let stem = name.strip_suffix(".slice")?;
    if stem == "-" {
        return Some(CgroupPath::default());
    }
    if stem.is_empty()
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
        || stem.contains('/')
    {
        return None;
    }
    let mut parts = Vec::new();
    for (at, _) in stem.match_indices('-') {
        parts.push(format!("{}.slice", &stem[..at]));
    }
    parts.push(name.to_owned());
    Some(CgroupPath(parts))
}

/// Controller (and core) prefixes of cgroup interface file names in v1 and v2
/// (`memory.limit_in_bytes`, `cgroup.procs`, `io.max`, ...). A directory of such a name would
/// clash with a control file of its parent (mkdir fails with "File exists", and a path through
/// it with "Not a directory") or read as one to every tool that lists a cgroup.
pub const INTERFACE_PREFIXES: &[&str] = &[
    "blkio",
    "cgroup",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "io",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// cgroup v1 interface files without a controller prefix.
pub const INTERFACE_FILES: &[&str] = &["tasks", "notify_on_release", "release_agent"];

/// Whether a path component names a cgroup interface file or starts with a controller prefix
/// (`cpu.x`): such a name cannot be a cgroup directory of its own.
pub fn is_interface_name(component: &str) -> bool {
    INTERFACE_FILES.contains(&component)
        || component
            .split_once('.')
            .is_some_and(|(prefix, _)| INTERFACE_PREFIXES.contains(&prefix))
}

/// Who owns which slices: each owner's roots, from `[slices.owners]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    roots: Vec<(String, CgroupPath)>,
}

impl Owners {
    /// Builds the table; a root must be a real path below `/` and belong to one owner only.
    pub fn from_table(table: &BTreeMap<String, Vec<String>>) -> Result<Self, OwnerError> {
        let mut roots: Vec<(String, CgroupPath)> = Vec::new();
        for (owner, slices) in table {
            for slice in slices {
                let bad = || OwnerError::BadRoot {
                    owner: owner.clone(),
                    root: slice.clone(),
                };
                let root = CgroupPath::parse_slice(slice).map_err(|_| bad())?;
                if root.is_root() {
                    return Err(bad());
                }
                if let Some((first, _)) = roots.iter().find(|(_, r)| *r == root) {
                    if first != owner {
                        return Err(OwnerError::SharedRoot {
                            root: root.to_string(),
                            first: first.clone(),
                            second: owner.clone(),
                        });
                    }
                    continue;
                }
                roots.push((owner.clone(), root));
            }
        }
        Ok(Self { roots })
    }

    /// The owner of `path`: the one whose root is the longest component-wise prefix of it.
    pub fn owner_of(&self, path: &CgroupPath) -> Option<&str> {
        self.matching_root(path).map(|(owner, _)| owner.as_str())
    }

    /// The owned root `path` lies in (the longest component-wise prefix).
    pub fn root_of(&self, path: &CgroupPath) -> Option<&CgroupPath> {
        self.matching_root(path).map(|(_, root)| root)
    }

    fn matching_root(&self, path: &CgroupPath) -> Option<&(String, CgroupPath)> {
        self.roots
            .iter()
            .filter(|(_, root)| path.starts_with(root))
            .max_by_key(|(_, root)| root.components().len())
    }

    /// The roots `owner` holds, in table order.
    pub fn roots_of<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a CgroupPath> {
        self.roots
            .iter()
            .filter(move |(o, _)| o == owner)
            .map(|(_, root)| root)
    }

    /// Every slice the default hierarchy has for `owner`: its roots and their known sub-slices,
    /// parents first.
    pub fn hierarchy_of(&self, owner: &str) -> Result<Vec<CgroupPath>, OwnerError> {
        let mut slices = Vec::new();
        for root in self.roots_of(owner) {
            slices.push(root.clone());
            for (parent, subs) in SUB_SLICES {
                if root.components() == [parent.to_string()] {
                    let stem = parent.trim_end_matches(".slice");
                    slices.extend(
                        subs.iter()
                            .map(|sub| root.child(&format!("{stem}-{sub}.slice"))),
                    );
                }
            }
        }
        if slices.is_empty() {
            return Err(OwnerError::UnknownOwner {
                owner: owner.into(),
            });
        }
        Ok(slices)
    }

    /// `owner = slice, slice; ...` for error messages.
    pub fn describe(&self) -> String {
        let mut by_owner: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (owner, root) in &self.roots {
            by_owner.entry(owner).or_default().push(root.to_string());
        }
        by_owner
            .iter()
            .map(|(owner, roots)| format!("{owner} = {}", roots.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_owners() -> Owners {
        Owners::from_table(&crate::config::SlicesConfig::default().owners).unwrap()
    }

    fn path(text: &str) -> CgroupPath {
        CgroupPath::parse(text).unwrap()
    }

    #[test]
    fn interface_names_table() {
        let cases = [
            ("cgroup.procs", true),
            ("cgroup.subtree_control", true),
            ("tasks", true),
            ("notify_on_release", true),
            ("memory.limit_in_bytes", true),
            ("memory.max", true),
            ("cpu.weight", true),
            ("io.max", true),
            ("pids.anything", true),
            ("cpuset.cpus", true),
            ("workload.slice", false),
            ("memory-heavy.slice", false),
            ("memory", false),
            ("tasks.d", false),
            ("libpod-1.scope", false),
            ("train.v2", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_interface_name(name), want, "{name}");
        }
    }

    #[test]
    fn ownership_table() {
        let owners = default_owners();
        let cases = [
            ("/workload.slice", Some("workload")),
            ("/workload.slice/libpod_parent/libpod-1", Some("workload")),
            ("workload.slice/x", Some("workload")),
            ("//workload.slice//x/", Some("workload")),
            ("/workload.slice-extra", None),
            ("/workload.slice-extra/x", None),
            ("/workload", None),
            ("/workload.sl", None),
            ("/x/workload.slice", None),
            ("/pact.slice/pact-gpu.slice/c1", Some("pact")),
            ("/pact.slice2", None),
            ("/system.slice", None),
            ("/", None),
        ];
        for (input, want) in cases {
            assert_eq!(owners.owner_of(&path(input)), want, "{input}");
        }
    }

    #[test]
    fn deepest_root_wins() {
        let table = BTreeMap::from([
            ("a".to_string(), vec!["top.slice".to_string()]),
            ("b".to_string(), vec!["top-inner.slice".to_string()]),
        ]);
        let owners = Owners::from_table(&table).unwrap();
        assert_eq!(owners.owner_of(&path("/top.slice/x")), Some("a"));
        assert_eq!(
            owners.owner_of(&path("/top.slice/top-inner.slice/x")),
            Some("b")
        );
    }

    #[test]
    fn dot_dot_and_nul_are_refused() {
        assert_eq!(
            CgroupPath::parse("/workload.slice/../system.slice"),
            Err(OwnerError::DotDot {
                path: "/workload.slice/../system.slice".into()
            })
        );
        assert!(CgroupPath::parse("a\0b").is_err());
        assert_eq!(path("/a/./b").to_string(), "/a/b");
    }

    #[test]
    fn slice_units_expand_like_systemd() {
        let cases = [
            ("workload.slice", Some("/workload.slice")),
            ("pact-gpu.slice", Some("/pact.slice/pact-gpu.slice")),
            ("a-b-c.slice", Some("/a.slice/a-b.slice/a-b-c.slice")),
            ("-.slice", Some("/")),
            ("-a.slice", None),
            ("a-.slice", None),
            ("a--b.slice", None),
            ("a.scope", None),
            ("workload.slice-extra", None),
        ];
        for (unit, want) in cases {
            assert_eq!(
                expand_slice_unit(unit).map(|p| p.to_string()).as_deref(),
                want,
                "{unit}"
            );
        }
        assert_eq!(
            path("/pact.slice/pact-gpu.slice").slice_unit().as_deref(),
            Some("pact-gpu.slice")
        );
        assert_eq!(path("/workload.slice/train.slice").slice_unit(), None);
        assert_eq!(path("/workload.slice/x.scope").slice_unit(), None);
    }

    #[test]
    fn default_hierarchy() {
        let owners = default_owners();
        let pact: Vec<String> = owners
            .hierarchy_of("pact")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            pact,
            [
                "/pact.slice",
                "/pact.slice/pact-infra.slice",
                "/pact.slice/pact-network.slice",
                "/pact.slice/pact-gpu.slice",
                "/pact.slice/pact-audit.slice",
            ]
        );
        assert_eq!(
            owners.hierarchy_of("workload").unwrap(),
            vec![path("/workload.slice")]
        );
        assert!(matches!(
            owners.hierarchy_of("nobody"),
            Err(OwnerError::UnknownOwner { .. })
        ));
    }

    #[test]
    fn bad_tables_are_refused() {
        let shared = BTreeMap::from([
            ("a".to_string(), vec!["x.slice".to_string()]),
            ("b".to_string(), vec!["/x.slice/".to_string()]),
        ]);
        assert!(matches!(
            Owners::from_table(&shared),
            Err(OwnerError::SharedRoot { .. })
        ));
        for root in ["/", "-.slice", "../x", ""] {
            let table = BTreeMap::from([("a".to_string(), vec![root.to_string()])]);
            assert!(
                matches!(Owners::from_table(&table), Err(OwnerError::BadRoot { .. })),
                "{root:?}"
            );
        }
    }
}
