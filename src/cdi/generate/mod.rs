//! CDI specs made from what the host's kernel and dynamic linker expose: NVIDIA GPUs from
//! procfs and the linker cache, AMD GPUs from the KFD topology, Intel GPUs from DRM in sysfs.
//! No vendor library is loaded. Every path is read under a [`Host`], so tests build fake trees.

pub mod amd;
pub mod intel;
pub mod ldcache;
pub mod nvidia;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use super::spec::{ContainerEdits, Device, DeviceNode, Hook, Mount, Spec};

/// The spec version generated specs declare: the lowest that allows their annotations.
pub const CDI_VERSION: &str = "0.6.0";
/// Spec-level annotation naming the generator; a spec file without it belongs to another tool.
pub const GENERATOR_ANNOTATION: &str = "io.cdirun.generated-by";
pub const GENERATOR: &str = "cdirun cdi generate";
/// Device annotation with the GPU model, matched by `io.cdirun.gpu.model`.
pub const MODEL_ANNOTATION: &str = "io.cdirun.gpu.model";
/// Device annotation with the GPU's PCI address.
pub const PCI_ANNOTATION: &str = "io.cdirun.gpu.pci-bus-id";
/// The hook program generated specs call, unless told otherwise.
pub const DEFAULT_HOOK: &str = "/usr/bin/cdirun-hook";
/// The stage of generated hooks: in the container's namespaces, before pivot_root, as
/// nvidia-ctk's hooks run.
pub const HOOK_STAGE: &str = "createContainer";
/// Options of every bind mount a generated spec makes, as nvidia-ctk writes them.
pub const MOUNT_OPTIONS: [&str; 5] = ["ro", "nosuid", "nodev", "rbind", "rprivate"];

/// Where the host's trees are: `/sys`, `/proc`, `/dev`, the linker cache, and the root that
/// paths found in the cache and binaries are read under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub root: PathBuf,
    pub sysfs: PathBuf,
    pub procfs: PathBuf,
    pub dev: PathBuf,
    pub ldcache: PathBuf,
}

impl Host {
    /// Every tree at its usual place under `root` (`/` for the host itself).
    pub fn under(root: &Path) -> Self {
        Host {
            root: root.to_owned(),
            sysfs: root.join("sys"),
            procfs: root.join("proc"),
            dev: root.join("dev"),
            ldcache: root.join("etc/ld.so.cache"),
        }
    }

    /// The host path of a device node named relative to `/dev` (`nvidia0`, `dri/card1`).
    pub fn dev_path(&self, name: &str) -> PathBuf {
        self.dev.join(name)
    }

    /// The host path of a path as seen from the host's root (`/usr/lib/x.so`).
    pub fn root_path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// The vendors `generate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
}

impl Vendor {
    pub const ALL: [Vendor; 3] = [Vendor::Nvidia, Vendor::Amd, Vendor::Intel];

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("no {vendor} GPU found: {why}")]
    NoGpu { vendor: &'static str, why: String },
    #[error(transparent)]
    Ldcache(#[from] ldcache::LdcacheError),
}

/// One generated spec and what the generator could not include, for the operator to read.
#[derive(Debug, Clone)]
pub struct Generated {
    pub vendor: Vendor,
    pub spec: Spec,
    pub warnings: Vec<String>,
}

/// Options every vendor's generator shares.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `cdirun-hook` program the specs' hooks run (a host path).
    pub hook: String,
    /// Hooks left out of the specs.
    pub disabled: Vec<HookKind>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hook: DEFAULT_HOOK.to_owned(),
            disabled: Vec::new(),
        }
    }
}

/// The `cdirun-hook` subcommands generated specs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// `ldcache`: needs ldconfig in the image, so musl and busybox images fail with it.
    Ldcache,
    /// `symlinks`: the libcuda.so and /dev/dri/by-path links.
    Symlinks,
}

/// Specs for `vendors`. A vendor asked for by name that has no GPU on the host is an error;
/// with several vendors, one without GPUs is only skipped.
pub fn generate(
    host: &Host,
    vendors: &[Vendor],
    options: &Options,
) -> Result<Vec<Generated>, GenerateError> {
    let mut out = Vec::new();
    let mut none = Vec::new();
    for vendor in vendors {
        let result = match vendor {
            Vendor::Nvidia => nvidia::generate(host, options),
            Vendor::Amd => amd::generate(host),
            Vendor::Intel => intel::generate(host),
        };
        match result {
            Ok(generated) => out.push(generated),
            Err(err @ GenerateError::NoGpu { .. }) if vendors.len() > 1 => none.push(err),
            Err(err) => return Err(err),
        }
    }
    if out.is_empty() {
        let why: Vec<String> = none.iter().map(ToString::to_string).collect();
        return Err(GenerateError::NoGpu {
            vendor: "supported",
            why: why.join("; "),
        });
    }
    Ok(out)
}

/// A new spec of `kind` with the generator annotation.
/// A host root in a temporary directory holding `files` (path below the root, text).
#[cfg(test)]
fn host_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let host = Host::under(dir.path());
    (dir, host)
}

/// Closes a vendor's device list: none found is an error saying why (`missing`, then the
/// warnings met on the way); else a device `all` with every node.
fn with_all(
    spec: &mut Spec,
    all: Vec<DeviceNode>,
    vendor: &'static str,
    missing: String,
    warnings: &[String],
) -> Result<(), GenerateError> {
    if spec.devices.is_empty() {
        return Err(GenerateError::NoGpu {
            vendor,
            why: format!("{missing}: {}", warnings.join("; ")),
        });
    }
    spec.devices.push(Device {
        name: "all".to_owned(),
        annotations: BTreeMap::new(),
        container_edits: ContainerEdits {
            device_nodes: all,
            ..ContainerEdits::default()
        },
    });
    Ok(())
}

fn new_spec(kind: &str) -> Spec {
    Spec {
        cdi_version: CDI_VERSION.to_owned(),
        kind: kind.to_owned(),
        annotations: BTreeMap::from([(GENERATOR_ANNOTATION.to_owned(), GENERATOR.to_owned())]),
        ..Spec::default()
    }
}

/// Reads a small text file, naming it in the error.
fn read_text(path: &Path) -> Result<String, GenerateError> {
    std::fs::read_to_string(path).map_err(|cause| GenerateError::Read {
        path: path.to_owned(),
        cause,
    })
}

/// Reads a small text file that may be absent.
fn read_optional(path: &Path) -> Result<Option<String>, GenerateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(GenerateError::Read {
            path: path.to_owned(),
            cause,
        }),
    }
}

/// The names in a dir, sorted; a missing dir has none.
fn dir_names(dir: &Path) -> Result<Vec<String>, GenerateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(GenerateError::Read {
                path: dir.to_owned(),
                cause,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|cause| GenerateError::Read {
            path: dir.to_owned(),
            cause,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Sorts names that end in a number by that number (`card2` before `card10`).
fn by_number(names: &mut [String]) {
    names.sort_by_key(|name| {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, number) = name.split_at(name.len() - digits);
        (stem.to_owned(), number.parse::<u64>().unwrap_or(u64::MAX))
    });
}

/// Whether the host has a character device at `path` (links followed).
pub fn is_char_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// A device node as generated specs write it: the container path and the host path, the rest
/// filled from the host node when the spec is applied.
fn device_node(host: &Host, name: &str) -> DeviceNode {
    DeviceNode {
        path: format!("/dev/{name}"),
        host_path: Some(host.dev_path(name).display().to_string()),
        ..DeviceNode::default()
    }
}

/// The node when the host has it, else a warning saying it is missing.
fn existing_node(host: &Host, name: &str, warnings: &mut Vec<String>) -> Option<DeviceNode> {
    let path = host.dev_path(name);
    if is_char_device(&path) {
        Some(device_node(host, name))
    } else {
        warnings.push(format!(
            "{} is missing or not a character device: left out",
            path.display()
        ));
        None
    }
}

/// A read-only bind mount of a host file at `container` (its path as the host's root sees it).
fn mount(host: &Host, container: &Path) -> Mount {
    Mount {
        host_path: host.root_path(container).display().to_string(),
        container_path: container.display().to_string(),
        typ: None,
        options: MOUNT_OPTIONS.iter().map(|o| o.to_string()).collect(),
    }
}

/// A createContainer hook running `cdirun-hook <args>`.
fn hook(options: &Options, args: &[String]) -> Hook {
    let mut argv = vec!["cdirun-hook".to_owned()];
    argv.extend(args.iter().cloned());
    Hook {
        hook_name: HOOK_STAGE.to_owned(),
        path: options.hook.clone(),
        args: argv,
        env: Vec::new(),
        timeout: None,
    }
}

/// A `cdirun-hook symlinks` hook for `links` (TARGET::LINK each); none when there are none.
fn symlinks_hook(options: &Options, links: &[String]) -> Option<Hook> {
    if links.is_empty() || options.disabled.contains(&HookKind::Symlinks) {
        return None;
    }
    let mut args = vec!["symlinks".to_owned()];
    for link in links {
        args.push("--link".to_owned());
        args.push(link.clone());
    }
    Some(hook(options, &args))
}

/// `path` (absolute, as the host's root sees it) with every symlink resolved inside `root`:
/// an absolute link target starts again at `root`, never at this machine's `/`.
pub fn resolve_in(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut done = PathBuf::from("/");
    let mut pending: Vec<OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let candidate = done.join(&name);
        let on_host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        let metadata = std::fs::symlink_metadata(&on_host)?;
        if !metadata.file_type().is_symlink() {
            done = candidate;
            continue;
        }
        hops += 1;
        if hops > 40 {
            return Err(std::io::Error::other(format!(
                "too many levels of symbolic links at {}",
                on_host.display()
            )));
        }
        let target = std::fs::read_link(&on_host)?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        for component in target.components().rev() {
            match component {
                Component::Normal(name) => pending.push(name.to_owned()),
                Component::ParentDir => pending.push(OsString::from("..")),
                _ => {}
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        std::fs::write(root.join("usr/lib/x/liba.so.1.2"), "").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("liba.so.1.2", root.join("usr/lib/x/liba.so.1")).unwrap();
        // Absolute: must land in the root, not on this machine's /usr.
        symlink("/usr/lib/x/liba.so.1", root.join("usr/lib/x/liba.so")).unwrap();
        let cases = [
            ("/lib/x/liba.so.1", "/usr/lib/x/liba.so.1.2"),
            ("/lib/x/liba.so", "/usr/lib/x/liba.so.1.2"),
            ("/usr/lib/x/../x/liba.so.1.2", "/usr/lib/x/liba.so.1.2"),
        ];
        for (path, want) in cases {
            assert_eq!(
                resolve_in(root, Path::new(path)).unwrap(),
                PathBuf::from(want),
                "{path}"
            );
        }
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in(root, Path::new("/loop")).is_err());
        assert!(resolve_in(root, Path::new("/missing")).is_err());
    }

    #[test]
    fn names_sort_by_their_number() {
        let mut names = vec!["card10".to_owned(), "card2".to_owned(), "card1".to_owned()];
        by_number(&mut names);
        assert_eq!(names, ["card1", "card2", "card10"]);
    }
}

/// A spec file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    /// The format a spec file name asks for, by its extension.
    pub fn of_file(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") => Some(Format::Yaml),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }
}

/// The spec as file text.
pub fn render(spec: &Spec, format: Format) -> String {
    match format {
        // Neither can fail: the model has only strings, numbers, lists and string maps.
        Format::Yaml => serde_yaml::to_string(spec).expect("a spec serializes to YAML"),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(spec).expect("a spec serializes to JSON");
            text.push('\n');
            text
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{}: {why}; it belongs to another tool (no {GENERATOR_ANNOTATION}: {GENERATOR:?} annotation): pass --force to replace it, or write elsewhere",
        .path.display()
    )]
    NotOurs { path: PathBuf, why: String },
    #[error("cannot write {}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Why the file at `path` must not be replaced without `--force`: it exists and is not a spec
/// this generator wrote. `None` when it is absent or ours.
pub fn foreign(path: &Path) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => return Some(format!("it cannot be read ({err})")),
    };
    match super::spec::parse(&bytes, path) {
        Ok(spec)
            if spec
                .annotations
                .get(GENERATOR_ANNOTATION)
                .map(String::as_str)
                == Some(GENERATOR) =>
        {
            None
        }
        Ok(spec) => Some(format!("it holds a {} spec", spec.kind)),
        Err(_) => Some("it is no CDI spec cdirun can read".to_owned()),
    }
}

/// Writes `text` to `path` through a temp file in the same dir and a rename, so a reader of
/// the spec dir never sees half a spec; refuses to replace another tool's file unless `force`.
pub fn write(path: &Path, text: &str, force: bool) -> Result<(), WriteError> {
    if !force {
        if let Some(why) = foreign(path) {
            return Err(WriteError::NotOurs {
                path: path.to_owned(),
                why,
            });
        }
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A dot name: the registry reads only *.json and *.yaml, so it never sees the temp file.
    let tmp = path.with_file_name(format!(".{name}.cdirun-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        // A spec dir is read by every later create: the spec must survive a crash whole.
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|cause| {
        let _ = std::fs::remove_file(&tmp);
        WriteError::Io {
            path: path.to_owned(),
            cause,
        }
    })?;
    Ok(())
}
