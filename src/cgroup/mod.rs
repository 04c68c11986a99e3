//! Cgroup hierarchies as this host mounts them (v1, hybrid or v2), and cleanup of the
//! directories a container's cgroupsPath would create.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The mount points of every cgroup hierarchy (each v1 controller, named v1 hierarchies, cgroup2).
pub fn mounted_hierarchies() -> io::Result<Vec<PathBuf>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_hierarchies(&mountinfo))
}

/// Picks cgroup and cgroup2 mount points out of `/proc/self/mountinfo` text.
pub fn parse_hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> ..."
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            left.split_whitespace()
                .nth(4)
                .map(|p| PathBuf::from(unescape_octal(p)))
        })
        .collect()
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
/// rmdir (its control files are not real files); a busy one is left and reported.
pub fn remove_dirs(dirs: &[PathBuf]) -> Vec<(PathBuf, io::Error)> {
    let mut sorted: Vec<&PathBuf> = dirs.iter().collect();
    sorted.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    sorted
        .into_iter()
        .filter_map(|dir| match fs::remove_dir(dir) {
            Ok(()) => None,
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => Some((dir.clone(), err)),
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
            parse_hierarchies(HYBRID),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/odd name"),
            ]
        );
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
