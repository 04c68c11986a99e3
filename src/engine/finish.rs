//! What runc does while it creates a container and libcontainer 0.7 leaves out, done by cdirun
//! around libcontainer's build: [`Finish::prepare`] adjusts the config before it is saved, and
//! [`Finish::apply`] works on the created container (its init waits for `start`, so its process
//! sees none of this happen).
//!
//! - Loopback: runc brings `lo` up in a network namespace it creates. libcontainer leaves it
//!   down, so nothing could listen on 127.0.0.1 in `podman run --network none`, in a pod's infra
//!   container or in a plain `ctr run`.
//! - tmpfs over an image directory: runc gives the tmpfs the directory's mode (unless the mount
//!   names a `mode=`) instead of the kernel's 1777, so a tmpfs on /etc is not world-writable.
//! - `tmpcopyup` (podman's `--tmpfs` and `--read-only` mounts): runc copies the directory's
//!   content into the new tmpfs, so an image's /tmp, /run or /var/tmp files stay visible.
//!   libcontainer cannot (the mount edit drops the option it would pass to the kernel); cdirun
//!   copies from the rootfs as the host sees it (the container's mounts do not propagate out)
//!   into the tmpfs as the container sees it, from a thread in the container's mount namespace.
//!   A read-only tmpfs is mounted writable and made read-only after the copy.
//! - cgroup mounts: libcontainer mounts the v1 hierarchies under a `type: cgroup` mount
//!   read-write, dropping its `ro,nosuid,nodev,noexec`, so a container could raise its own
//!   `pids.max` or memory limit. cdirun applies the mount's flags to the whole tree afterwards.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use nix::fcntl::{AtFlags, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// The work left for after the build, found in the config before it was saved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finish {
    /// The container gets a network namespace of its own.
    loopback: bool,
    /// tmpfs mounts to fill with the image's content, in mount order.
    copy_ups: Vec<CopyUp>,
    /// `type: cgroup` mounts and the mount flags their options ask for.
    cgroup_mounts: Vec<(PathBuf, u64)>,
}

#[derive(Debug, PartialEq, Eq)]
struct CopyUp {
    destination: PathBuf,
    /// The client asked for a read-only tmpfs: mounted writable, remounted read-only after.
    read_only: bool,
}

impl Finish {
    /// Adjusts the tmpfs mounts of `spec` (the edited config, about to be saved) as runc would
    /// mount them, and notes what [`Finish::apply`] must do. `client` is the client's own config:
    /// the mount edit has dropped `tmpcopyup` from `spec`. `rootfs` is the host path of the
    /// container's root, read before libcontainer creates any missing mount point in it.
    pub fn prepare(spec: &mut Spec, client: &Spec, rootfs: &Path) -> Self {
        let loopback = spec
            .linux()
            .as_ref()
            .and_then(|linux| linux.namespaces().as_ref())
            .is_some_and(|namespaces| {
                namespaces
                    .iter()
                    .any(|ns| ns.typ() == LinuxNamespaceType::Network && ns.path().is_none())
            });
        let root = open_dir(rootfs).ok();
        let mut copy_ups = Vec::new();
        for mount in spec.mounts_mut().iter_mut().flatten() {
            if mount.typ().as_deref() != Some("tmpfs") {
                continue;
            }
            let Some(covered) = root.as_ref().and_then(|root| covered_dir(root, mount)) else {
                continue;
            };
            let mut options = mount.options().clone().unwrap_or_default();
            if !options.iter().any(|o| o.starts_with("mode=")) {
                options.insert(0, format!("mode={:o}", covered.st_mode & 0o7777));
            }
            if wants_copy_up(client, mount.destination()) {
                let read_only = options.iter().any(|o| o == "ro");
                options.retain(|o| o != "ro");
                copy_ups.push(CopyUp {
                    destination: mount.destination().clone(),
                    read_only,
                });
            }
            mount.set_options(Some(options));
        }
        let cgroup_mounts = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|mount| mount.typ().as_deref() == Some("cgroup"))
            .map(|mount| (mount.destination().clone(), mount_attrs(mount)))
            .filter(|(_, attrs)| *attrs != 0)
            .collect();
        Finish {
            loopback,
            copy_ups,
            cgroup_mounts,
        }
    }

    /// Rootless with a user namespace of the container's own: cdirun cannot join the
    /// container's mount namespace, so the `type: cgroup` mounts keep libcontainer's flags
    /// (a rootless container can write only what its user may write on the host anyway).
    pub fn skip_cgroup_mounts(&mut self) {
        self.cgroup_mounts.clear();
    }

    /// Does the work on the created container whose init is `pid` and whose root is `rootfs`.
    pub fn apply(&self, pid: i32, rootfs: &Path) -> Result<()> {
        if self.loopback {
            in_namespace(pid, "net", || loopback_up().map_err(anyhow::Error::from))
                .context("cannot bring up the loopback interface")?;
        }
        if self.cgroup_mounts.is_empty() && self.copy_ups.is_empty() {
            return Ok(());
        }
        // The image's files are opened as the host sees the rootfs, before joining.
        let sources = if self.copy_ups.is_empty() {
            Vec::new()
        } else {
            let root = open_dir(rootfs)
                .with_context(|| format!("cannot open the rootfs {}", rootfs.display()))?;
            self.copy_ups
                .iter()
                .map(|copy_up| {
                    open_in_root(&root, &copy_up.destination).with_context(|| {
                        let dest = copy_up.destination.display();
                        format!("tmpcopyup {dest}: cannot open it in the rootfs")
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        // One thread in the container's mount namespace does all the mount work.
        in_namespace(pid, "mnt", || {
            for (destination, attrs) in &self.cgroup_mounts {
                set_mount_attrs(destination, *attrs).with_context(|| {
                    let dest = destination.display();
                    format!("cannot apply the options of cgroup mount {dest}")
                })?;
            }
            for (copy_up, source) in self.copy_ups.iter().zip(&sources) {
                copy_up
                    .fill(source)
                    .with_context(|| format!("tmpcopyup {}", copy_up.destination.display()))?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

impl CopyUp {
    /// In the container's mount namespace: copies `source` into the tmpfs at the destination.
    fn fill(&self, source: &OwnedFd) -> Result<()> {
        let target = open_dir(&self.destination).context("cannot open the tmpfs")?;
        let fs = nix::sys::statfs::fstatfs(&target)?;
        if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
            // Something else was mounted over it: nothing of the image would show anyway.
            return Ok(());
        }
        let device = nix::sys::stat::fstat(target.as_raw_fd())?.st_dev;
        copy_tree(source, &target, device).context("cannot copy the image's files")?;
        if self.read_only {
            let flags = nix::sys::statvfs::fstatvfs(&target)?.flags();
            remount_read_only(&self.destination, flags).context("cannot make it read-only")?;
        }
        Ok(())
    }
}

/// Whether the client's mount at `destination` asks for `tmpcopyup`; as with runc, the last of
/// `tmpcopyup` and `notmpcopyup` wins.
fn wants_copy_up(client: &Spec, destination: &Path) -> bool {
    let Some(mount) = client
        .mounts()
        .iter()
        .flatten()
        .rfind(|m| m.destination() == destination && m.typ().as_deref() == Some("tmpfs"))
    else {
        return false;
    };
    mount
        .options()
        .iter()
        .flatten()
        .rev()
        .find_map(|o| match o.as_str() {
            "tmpcopyup" => Some(true),
            "notmpcopyup" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// The directory a mount covers in the rootfs, if there is one.
fn covered_dir(root: &OwnedFd, mount: &Mount) -> Option<FileStat> {
    let dir = open_in_root(root, mount.destination()).ok()?;
    nix::sys::stat::fstat(dir.as_raw_fd()).ok()
}

/// Opens `path` inside `root` the way the container would resolve it: symlinks and `..` never
/// leave `root`.
fn open_in_root(root: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let name = CString::new(relative.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain data; all zeroes is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: openat2 reads `name` and `how` and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: the descriptor is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `work` on a thread that joined the `kind` namespace (a name under /proc/PID/ns) of
/// `pid`; the thread ends with it, so cdirun itself never changes namespace.
fn in_namespace<T: Send>(
    pid: i32,
    kind: &str,
    work: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let ns_path = format!("/proc/{pid}/ns/{kind}");
    let ns = File::open(&ns_path).with_context(|| format!("cannot open {ns_path}"))?;
    let flags = match kind {
        "net" => CloneFlags::CLONE_NEWNET,
        "mnt" => CloneFlags::CLONE_NEWNS,
        other => anyhow::bail!("no namespace kind {other}"),
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if flags == CloneFlags::CLONE_NEWNS {
                    // Threads share their root and cwd; joining a mount namespace needs its own.
                    nix::sched::unshare(CloneFlags::CLONE_FS).context("cannot unshare CLONE_FS")?;
                }
                nix::sched::setns(ns.as_fd(), flags)
                    .with_context(|| format!("cannot join {ns_path}"))?;
                work()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in {ns_path} panicked"))?
    })
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: both ioctls read and write only `request`, an ifreq as they expect.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Copies the entries of `source` into `target` with their modes and owners: directories,
/// regular files, symlinks, device nodes and fifos. An entry already in `target` stays: it is a
/// mount point libcontainer made for a mount inside the tmpfs. An existing directory on the
/// tmpfs itself (`device`) is merged into; anything on another filesystem is never entered.
fn copy_tree(source: &OwnedFd, target: &OwnedFd, device: u64) -> Result<()> {
    let dir_fd = nix::unistd::dup(source.as_raw_fd())?;
    let mut dir = nix::dir::Dir::from_fd(dir_fd)?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let name_path = Path::new(OsStr::from_bytes(name.to_bytes()));
        copy_entry(source, target, name, device)
            .with_context(|| format!("cannot copy {}", name_path.display()))?;
    }
    Ok(())
}

fn copy_entry(
    source: &OwnedFd,
    target: &OwnedFd,
    name: &std::ffi::CStr,
    device: u64,
) -> Result<()> {
    let (src, dst) = (Some(source.as_raw_fd()), Some(target.as_raw_fd()));
    let stat = nix::sys::stat::fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT);
    let mode = Mode::from_bits_truncate(stat.st_mode & 0o7777);
    let existing = nix::sys::stat::fstatat(dst, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    if let Some(existing) = existing {
        let is_dir = |s: &FileStat| s.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir(&existing) && existing.st_dev == device && kind == SFlag::S_IFDIR {
            let from = open_child(source, name)?;
            let to = open_child(target, name)?;
            copy_tree(&from, &to, device)?;
        }
        return Ok(());
    }
    match kind {
        SFlag::S_IFDIR => {
            nix::sys::stat::mkdirat(dst, name, Mode::S_IRWXU)?;
            let from = open_child(source, name)?;
            let to = open_child(target, name)?;
            copy_tree(&from, &to, device)?;
        }
        SFlag::S_IFREG => {
            let from = nix::fcntl::openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            // SAFETY: the descriptor is new and owned by nobody else.
            let mut from = unsafe { File::from_raw_fd(from) };
            let to = nix::fcntl::openat(
                dst,
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )?;
            // SAFETY: as above.
            let mut to = unsafe { File::from_raw_fd(to) };
            io::copy(&mut from, &mut to)?;
        }
        SFlag::S_IFLNK => {
            let link = nix::fcntl::readlinkat(src, name)?;
            nix::unistd::symlinkat(link.as_os_str(), dst, name)?;
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
            nix::sys::stat::mknodat(dst, name, kind, Mode::S_IRUSR, stat.st_rdev)?;
        }
        // A socket belongs to a process that bound it: there is nothing to copy.
        _ => return Ok(()),
    }
    // Owner first: changing it clears the set-id bits the mode may carry. A symlink has no
    // mode of its own.
    nix::unistd::fchownat(
        dst,
        name,
        Some(Uid::from_raw(stat.st_uid)),
        Some(Gid::from_raw(stat.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if kind != SFlag::S_IFLNK {
        nix::sys::stat::fchmodat(
            dst,
            name,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    Ok(())
}

/// Opens the directory `name` in `parent` without following a symlink.
fn open_child(parent: &OwnedFd, name: &std::ffi::CStr) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(parent.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: the descriptor is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The `MOUNT_ATTR_*` flags a mount's options ask for (`ro`, `nosuid`, `nodev`, `noexec`).
fn mount_attrs(mount: &Mount) -> u64 {
    let mut attrs = 0;
    for option in mount.options().iter().flatten() {
        attrs |= match option.as_str() {
            "ro" => libc::MOUNT_ATTR_RDONLY,
            "nosuid" => libc::MOUNT_ATTR_NOSUID,
            "nodev" => libc::MOUNT_ATTR_NODEV,
            "noexec" => libc::MOUNT_ATTR_NOEXEC,
            _ => 0,
        };
    }
    attrs
}

/// Sets `attrs` on the mount at `path` and every mount below it, in the calling thread's mount
/// namespace. A symlink at `path` is not followed.
fn set_mount_attrs(path: &Path, attrs: u64) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let flags = libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW;
    crate::engine::seal::mount_setattr(libc::AT_FDCWD, &path, flags, attrs)?;
    Ok(())
}

/// Makes the mount at `path` read-only, keeping its other per-mount flags (a bind remount
/// changes only the mount, as runc's read-only remount does).
fn remount_read_only(path: &Path, flags: nix::sys::statvfs::FsFlags) -> nix::Result<()> {
    use nix::mount::MsFlags;
    use nix::sys::statvfs::FsFlags;
    let mut ms = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (fs, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if flags.contains(fs) {
            ms |= keep;
        }
    }
    nix::mount::mount(None::<&str>, path, None::<&str>, ms, None::<&str>)
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{
        LinuxBuilder, LinuxNamespaceBuilder, MountBuilder, SpecBuilder,
    };

    use super::*;

    fn tmpfs(destination: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(destination)
            .typ("tmpfs")
            .source("tmpfs")
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    fn spec(mounts: Vec<Mount>, netns_path: Option<&str>) -> Spec {
        let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
        if let Some(path) = netns_path {
            ns = ns.path(path);
        }
        SpecBuilder::default()
            .mounts(mounts)
            .linux(
                LinuxBuilder::default()
                    .namespaces(vec![ns.build().unwrap()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn options(spec: &Spec) -> Vec<Vec<String>> {
        spec.mounts()
            .iter()
            .flatten()
            .map(|m| m.options().clone().unwrap_or_default())
            .collect()
    }

    /// The mode of a covered directory goes first (a client's `mode=` wins); only a directory
    /// that exists gives one; `tmpcopyup` is read from the client's config and `ro` is deferred.
    #[test]
    fn prepares_tmpfs_mounts_as_runc_mounts_them() {
        let rootfs = tempfile::tempdir().unwrap();
        for (dir, mode) in [("etc", 0o750), ("tmp", 0o1777), ("run", 0o755)] {
            let path = rootfs.path().join(dir);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
        std::os::unix::fs::symlink("/run", rootfs.path().join("varrun")).unwrap();
        let client = spec(
            vec![
                tmpfs("/etc", &["nosuid"]),
                tmpfs("/tmp", &["rw", "tmpcopyup"]),
                tmpfs("/varrun", &["ro", "tmpcopyup", "mode=700"]),
                tmpfs("/missing", &["tmpcopyup"]),
                tmpfs("/run", &["tmpcopyup", "notmpcopyup"]),
            ],
            None,
        );
        // What the mount edit leaves: no copy-up options.
        let mut edited = spec(
            vec![
                tmpfs("/etc", &["nosuid"]),
                tmpfs("/tmp", &["rw"]),
                tmpfs("/varrun", &["ro", "mode=700"]),
                tmpfs("/missing", &[]),
                tmpfs("/run", &[]),
            ],
            None,
        );
        let finish = Finish::prepare(&mut edited, &client, rootfs.path());
        assert_eq!(
            options(&edited),
            [
                vec!["mode=750", "nosuid"],
                vec!["mode=1777", "rw"],
                vec!["mode=700"],
                vec![],
                vec!["mode=755"],
            ]
        );
        assert_eq!(
            finish,
            Finish {
                loopback: true,
                copy_ups: vec![
                    CopyUp {
                        destination: "/tmp".into(),
                        read_only: false
                    },
                    CopyUp {
                        destination: "/varrun".into(),
                        read_only: true
                    },
                ],
                cgroup_mounts: Vec::new(),
            }
        );
    }

    #[test]
    fn cgroup_mount_options_become_mount_attributes() {
        let mount = |options: &[&str]| {
            MountBuilder::default()
                .destination("/sys/fs/cgroup")
                .typ("cgroup")
                .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap()
        };
        let spec = spec(
            vec![
                mount(&["nosuid", "noexec", "nodev", "relatime", "ro"]),
                mount(&["rw", "relatime"]),
            ],
            None,
        );
        let finish = Finish::prepare(&mut spec.clone(), &spec, Path::new("/nonexistent"));
        let all = libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC;
        // A mount that asks for nothing is left as libcontainer made it.
        assert_eq!(finish.cgroup_mounts, vec![("/sys/fs/cgroup".into(), all)]);
    }

    #[test]
    fn loopback_only_for_a_new_network_namespace() {
        let rootfs = tempfile::tempdir().unwrap();
        let mut joined = spec(vec![], Some("/proc/1/ns/net"));
        let finish = Finish::prepare(&mut joined.clone(), &joined, rootfs.path());
        assert!(!finish.loopback);
        let mut host = joined.clone();
        host.linux_mut()
            .as_mut()
            .unwrap()
            .set_namespaces(Some(vec![]));
        let finish = Finish::prepare(&mut host.clone(), &host, rootfs.path());
        assert!(!finish.loopback);
        joined = spec(vec![], None);
        let finish = Finish::prepare(&mut joined.clone(), &joined, rootfs.path());
        assert!(finish.loopback);
    }

    /// The copy keeps modes, owners, symlinks and nested directories, and leaves an entry that
    /// is already there (a mount point) alone.
    #[test]
    fn copy_tree_keeps_modes_owners_and_links_and_skips_existing_entries() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let source = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let s = source.path();
        std::fs::create_dir(s.join("d")).unwrap();
        std::fs::write(s.join("d/f"), "data").unwrap();
        std::fs::set_permissions(s.join("d"), PermissionsExt::from_mode(0o1750)).unwrap();
        std::os::unix::fs::chown(s.join("d/f"), Some(5), Some(6)).unwrap();
        std::fs::set_permissions(s.join("d/f"), PermissionsExt::from_mode(0o4711)).unwrap();
        std::os::unix::fs::symlink("d/f", s.join("l")).unwrap();
        std::fs::write(s.join("kept"), "image").unwrap();
        std::fs::write(target.path().join("kept"), "mount point").unwrap();
        let device = std::fs::metadata(target.path()).unwrap().dev();
        copy_tree(
            &open_dir(s).unwrap(),
            &open_dir(target.path()).unwrap(),
            device,
        )
        .unwrap();
        let t = target.path();
        assert_eq!(std::fs::read_to_string(t.join("d/f")).unwrap(), "data");
        let dir = std::fs::metadata(t.join("d")).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o1750);
        let file = std::fs::metadata(t.join("d/f")).unwrap();
        assert_eq!(
            (file.mode() & 0o7777, file.uid(), file.gid()),
            (0o4711, 5, 6)
        );
        assert_eq!(std::fs::read_link(t.join("l")).unwrap(), Path::new("d/f"));
        assert_eq!(
            std::fs::read_to_string(t.join("kept")).unwrap(),
            "mount point"
        );
    }
}
