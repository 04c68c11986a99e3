//! NVIDIA: GPUs from `/proc/driver/nvidia/gpus/*/information`, MIG instances from
//! `/proc/driver/nvidia/capabilities` and `/proc/driver/nvidia-caps/mig-minors`, DRM nodes of
//! the same PCI device from sysfs, and the driver's libraries from the linker cache, matched
//! to the version in `/proc/driver/nvidia/version`. The spec has the layout `nvidia-ctk cdi
//! generate` writes: devices by index, by UUID and `all`; control nodes, driver files and
//! hooks at spec level, so they come with any of its devices.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{
    GenerateError, Generated, HookKind, Host, MODEL_ANNOTATION, Options, PCI_ANNOTATION, Vendor,
    dir_names, existing_node, hook, ldcache, mount, new_spec, read_optional, read_text, resolve_in,
    symlinks_hook,
};
use crate::cdi::spec::{ContainerEdits, Device, DeviceNode};

/// Control nodes every container with an NVIDIA GPU needs, relative to `/dev`, and whether a
/// missing one is worth a warning (`nvidia-uvm-tools` and `nvidia-modeset` often are absent).
pub const CONTROL_NODES: [(&str, bool); 4] = [
    ("nvidiactl", true),
    ("nvidia-uvm", true),
    ("nvidia-uvm-tools", false),
    ("nvidia-modeset", false),
];
/// The driver's programs, mounted where the host has them.
pub const BINARIES: [&str; 5] = [
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];
/// Where the programs are looked for (under the host root), first match wins.
pub const BINARY_DIRS: [&str; 5] = ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"];
/// The persistence daemon's socket, mounted when present.
pub const PERSISTENCED_SOCKET: &str = "/run/nvidia-persistenced/socket";
/// Environment every container gets, as from nvidia-ctk: the image's NVIDIA_VISIBLE_DEVICES
/// must not make a legacy hook inject devices a second time.
pub const SPEC_ENV: &str = "NVIDIA_VISIBLE_DEVICES=void";

/// One GPU as the driver's procfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// PCI address, lower case (`0000:3b:00.0`).
    pub bus: String,
    /// Minor of `/dev/nvidia<minor>`.
    pub minor: u32,
    pub uuid: String,
    pub model: String,
    /// DRM nodes of the same PCI device (`card1`, `renderD128`).
    pub drm: Vec<String>,
    pub migs: Vec<Mig>,
}

/// One MIG compute instance: its GPU and compute instance ids and the minors of their
/// `/dev/nvidia-caps/nvidia-cap<N>` access nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mig {
    pub gi: u32,
    pub ci: u32,
    pub gi_minor: u32,
    pub ci_minor: u32,
}

/// `Key: value` from a procfs information file.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The driver version from `/proc/driver/nvidia/version`: the first word of its first line
/// that looks like `550.54.14` (proprietary and open kernel modules word the line differently).
pub fn driver_version(host: &Host) -> Result<String, GenerateError> {
    let path = host.procfs.join("driver/nvidia/version");
    let text = read_text(&path)?;
    let first = text.lines().next().unwrap_or_default();
    first
        .split_whitespace()
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .ok_or_else(|| GenerateError::Parse {
            path,
            why: format!("no driver version in {first:?}"),
        })
}

/// The GPUs, in PCI address order (the order NVML and nvidia-smi number them in).
pub fn gpus(host: &Host, warnings: &mut Vec<String>) -> Result<Vec<Gpu>, GenerateError> {
    let dir = host.procfs.join("driver/nvidia/gpus");
    if !dir.exists() {
        return Err(GenerateError::NoGpu {
            vendor: "NVIDIA",
            why: format!(
                "{} does not exist (is the nvidia kernel module loaded?)",
                dir.display()
            ),
        });
    }
    let caps = mig_minors(host)?;
    let mut gpus = Vec::new();
    for name in dir_names(&dir)? {
        let path = dir.join(&name).join("information");
        let text = read_text(&path)?;
        let missing = |key: &str| GenerateError::Parse {
            path: path.clone(),
            why: format!("no {key:?} line"),
        };
        let minor = field(&text, "Device Minor").ok_or_else(|| missing("Device Minor"))?;
        let minor: u32 = minor.parse().map_err(|_| GenerateError::Parse {
            path: path.clone(),
            why: format!("invalid Device Minor {minor:?}"),
        })?;
        let uuid = field(&text, "GPU UUID").ok_or_else(|| missing("GPU UUID"))?;
        let bus = field(&text, "Bus Location")
            .unwrap_or(&name)
            .to_ascii_lowercase();
        let drm_dir = host.sysfs.join("bus/pci/devices").join(&bus).join("drm");
        let drm = dir_names(&drm_dir)?
            .into_iter()
            .filter(|n| n.starts_with("card") || n.starts_with("renderD"))
            .collect();
        gpus.push(Gpu {
            migs: migs(host, minor, &caps, warnings)?,
            bus,
            minor,
            uuid: uuid.to_owned(),
            model: field(&text, "Model").unwrap_or_default().to_owned(),
            drm,
        });
    }
    if gpus.is_empty() {
        return Err(GenerateError::NoGpu {
            vendor: "NVIDIA",
            why: format!("{} is empty", dir.display()),
        });
    }
    gpus.sort_by(|a, b| a.bus.cmp(&b.bus));
    Ok(gpus)
}

/// `/proc/driver/nvidia-caps/mig-minors`: capability (`gpu0/gi1/ci0/access`) -> minor.
fn mig_minors(host: &Host) -> Result<BTreeMap<String, u32>, GenerateError> {
    let path = host.procfs.join("driver/nvidia-caps/mig-minors");
    let Some(text) = read_optional(&path)? else {
        return Ok(BTreeMap::new());
    };
    let mut caps = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line
            .split_once(' ')
            .and_then(|(cap, minor)| Some((cap.to_owned(), minor.trim().parse().ok()?)));
        let Some((cap, minor)) = parsed else {
            return Err(GenerateError::Parse {
                path,
                why: format!("invalid line {line:?}: expected CAPABILITY MINOR"),
            });
        };
        caps.insert(cap, minor);
    }
    Ok(caps)
}

/// The number after `prefix` in a name such as `gi3`.
fn numbered(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.parse().ok()
}

/// The MIG compute instances the driver shows for the GPU with `minor`, by GI then CI id.
fn migs(
    host: &Host,
    minor: u32,
    caps: &BTreeMap<String, u32>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Mig>, GenerateError> {
    let dir = host
        .procfs
        .join(format!("driver/nvidia/capabilities/gpu{minor}/mig"));
    let mut gis: Vec<u32> = dir_names(&dir)?
        .iter()
        .filter_map(|n| numbered(n, "gi"))
        .collect();
    gis.sort_unstable();
    let mut migs = Vec::new();
    for gi in gis {
        let mut cis: Vec<u32> = dir_names(&dir.join(format!("gi{gi}")))?
            .iter()
            .filter_map(|n| numbered(n, "ci"))
            .collect();
        cis.sort_unstable();
        for ci in cis {
            let gi_cap = format!("gpu{minor}/gi{gi}/access");
            let ci_cap = format!("gpu{minor}/gi{gi}/ci{ci}/access");
            match (caps.get(&gi_cap), caps.get(&ci_cap)) {
                (Some(&gi_minor), Some(&ci_minor)) => migs.push(Mig {
                    gi,
                    ci,
                    gi_minor,
                    ci_minor,
                }),
                _ => warnings.push(format!(
                    "MIG instance gpu{minor}/gi{gi}/ci{ci} has no minor in {}: left out",
                    host.procfs.join("driver/nvidia-caps/mig-minors").display()
                )),
            }
        }
    }
    Ok(migs)
}

/// The driver's libraries: every native library in the linker cache whose file, links
/// resolved under the host root, is named `*.so.<version>`, as paths the host's root sees, with
/// the sonames the cache knows it by (`libcuda.so.1`).
pub fn libraries(
    host: &Host,
    version: &str,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<PathBuf, BTreeSet<String>>, GenerateError> {
    let entries = ldcache::read(&host.ldcache)?;
    let suffix = format!(".so.{version}");
    let mut found: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| e.is_native()) {
        match resolve_in(&host.root, &entry.path) {
            Ok(resolved) => {
                let name = resolved.file_name().unwrap_or_default().to_string_lossy();
                if name.ends_with(&suffix) {
                    let sonames = found.entry(resolved.clone()).or_default();
                    if *name != entry.name {
                        sonames.insert(entry.name.clone());
                    }
                }
            }
            Err(err) if entry.name.contains("nvidia") || entry.name.starts_with("libcuda") => {
                warnings.push(format!(
                    "{} ({} in {}) cannot be resolved: {err}; left out",
                    entry.path.display(),
                    entry.name,
                    host.ldcache.display()
                ));
            }
            Err(_) => {}
        }
    }
    if found.is_empty() {
        warnings.push(format!(
            "no library named *{suffix} in {}: the spec has no driver libraries (run ldconfig on the host?)",
            host.ldcache.display()
        ));
    }
    Ok(found)
}

/// The driver's programs, GSP firmware for `version` and the persistence daemon's socket,
/// as paths the host's root sees.
fn driver_files(host: &Host, version: &str) -> Result<Vec<PathBuf>, GenerateError> {
    let mut files = Vec::new();
    for binary in BINARIES {
        let found = BINARY_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(binary))
            .find(|path| host.root_path(path).is_file());
        files.extend(found);
    }
    let firmware = PathBuf::from(format!("/lib/firmware/nvidia/{version}"));
    for name in dir_names(&host.root_path(&firmware))? {
        if name.starts_with("gsp") && name.ends_with(".bin") {
            files.push(firmware.join(name));
        }
    }
    let socket = Path::new(PERSISTENCED_SOCKET);
    if host.root_path(socket).exists() {
        files.push(socket.to_owned());
    }
    Ok(files)
}

/// A GPU's own edits: its node, its DRM nodes and their by-path links.
fn gpu_edits(
    host: &Host,
    gpu: &Gpu,
    warnings: &mut Vec<String>,
) -> Option<(Vec<DeviceNode>, Vec<String>)> {
    let mut nodes = vec![existing_node(
        host,
        &format!("nvidia{}", gpu.minor),
        warnings,
    )?];
    let mut links = Vec::new();
    for name in &gpu.drm {
        if let Some(node) = existing_node(host, &format!("dri/{name}"), warnings) {
            nodes.push(node);
            let kind = if name.starts_with("card") {
                "card"
            } else {
                "render"
            };
            links.push(format!(
                "../{name}::/dev/dri/by-path/pci-{}-{kind}",
                gpu.bus
            ));
        }
    }
    Some((nodes, links))
}

fn device(
    name: String,
    annotations: BTreeMap<String, String>,
    nodes: Vec<DeviceNode>,
    hook: Option<crate::cdi::spec::Hook>,
) -> Device {
    Device {
        name,
        annotations,
        container_edits: ContainerEdits {
            device_nodes: nodes,
            hooks: hook.into_iter().collect(),
            ..ContainerEdits::default()
        },
    }
}

/// The NVIDIA spec for the host.
pub fn generate(host: &Host, options: &Options) -> Result<Generated, GenerateError> {
    let mut warnings = Vec::new();
    let gpus = gpus(host, &mut warnings)?;
    let version = driver_version(host)?;
    let mut spec = new_spec(crate::request::NVIDIA_KIND);

    let mut by_index = Vec::new();
    let mut by_uuid = Vec::new();
    let mut migs = Vec::new();
    let mut all_nodes: Vec<DeviceNode> = Vec::new();
    let mut all_links: Vec<String> = Vec::new();
    let mut add_to_all = |nodes: &[DeviceNode], links: &[String]| {
        for node in nodes {
            if !all_nodes.iter().any(|n| n.path == node.path) {
                all_nodes.push(node.clone());
            }
        }
        all_links.extend(links.iter().cloned());
    };
    for (index, gpu) in gpus.iter().enumerate() {
        let Some((nodes, links)) = gpu_edits(host, gpu, &mut warnings) else {
            warnings.push(format!(
                "GPU {index} ({}) left out: create its device nodes (nvidia-modprobe, or run nvidia-smi once) and generate again",
                gpu.bus
            ));
            continue;
        };
        let mut annotations = BTreeMap::from([(PCI_ANNOTATION.to_owned(), gpu.bus.clone())]);
        if !gpu.model.is_empty() {
            annotations.insert(MODEL_ANNOTATION.to_owned(), gpu.model.clone());
        }
        add_to_all(&nodes, &links);
        let hook = symlinks_hook(options, &links);
        by_index.push(device(
            index.to_string(),
            annotations.clone(),
            nodes.clone(),
            hook.clone(),
        ));
        by_uuid.push(device(
            gpu.uuid.clone(),
            annotations.clone(),
            nodes.clone(),
            hook,
        ));
        for (k, mig) in gpu.migs.iter().enumerate() {
            let caps = [mig.gi_minor, mig.ci_minor].map(|minor| {
                existing_node(
                    host,
                    &format!("nvidia-caps/nvidia-cap{minor}"),
                    &mut warnings,
                )
            });
            let [Some(gi), Some(ci)] = caps else {
                warnings.push(format!(
                    "MIG device {index}:{k} left out: create its /dev/nvidia-caps nodes (nvidia-modprobe -f /proc/driver/nvidia/capabilities/...) and generate again"
                ));
                continue;
            };
            let mig_nodes = vec![nodes[0].clone(), gi, ci];
            add_to_all(&mig_nodes, &[]);
            migs.push(device(
                format!("{index}:{k}"),
                annotations.clone(),
                mig_nodes,
                None,
            ));
        }
    }
    if by_index.is_empty() {
        return Err(GenerateError::NoGpu {
            vendor: "NVIDIA",
            why: format!(
                "no GPU has its device node under {}: {}",
                host.dev.display(),
                warnings.join("; ")
            ),
        });
    }
    all_links.sort();
    all_links.dedup();
    let all_hook = symlinks_hook(options, &all_links);
    spec.devices = by_index;
    spec.devices.append(&mut migs);
    spec.devices.append(&mut by_uuid);
    spec.devices.push(device(
        "all".to_owned(),
        BTreeMap::new(),
        all_nodes,
        all_hook,
    ));

    let mut edits = ContainerEdits {
        env: vec![SPEC_ENV.to_owned()],
        ..ContainerEdits::default()
    };
    for (name, warn) in CONTROL_NODES {
        let mut quiet = Vec::new();
        let node = existing_node(host, name, if warn { &mut warnings } else { &mut quiet });
        edits.device_nodes.extend(node);
    }
    let libraries = libraries(host, &version, &mut warnings)?;
    let mut dirs: Vec<PathBuf> = libraries
        .keys()
        .filter_map(|lib| lib.parent().map(Path::to_owned))
        .collect();
    dirs.sort();
    dirs.dedup();
    let ldcache_hook = !dirs.is_empty() && !options.disabled.contains(&HookKind::Ldcache);
    let mut links = Vec::new();
    for (lib, sonames) in &libraries {
        let (Some(dir), Some(name)) = (lib.parent(), lib.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        // Without the ldcache hook nothing makes the soname links (libcuda.so.1) that
        // programs load: the symlinks hook makes them, as ldconfig would.
        if !ldcache_hook {
            for soname in sonames {
                links.push(format!("{name}::{}", dir.join(soname).display()));
            }
        }
        if name.starts_with("libcuda.so.") {
            links.push(format!(
                "libcuda.so.1::{}",
                dir.join("libcuda.so").display()
            ));
        }
    }
    let mut files: Vec<PathBuf> = libraries.keys().cloned().collect();
    files.extend(driver_files(host, &version)?);
    files.sort();
    files.dedup();
    edits.mounts = files.iter().map(|f| mount(host, f)).collect();
    edits.hooks.extend(symlinks_hook(options, &links));
    if ldcache_hook {
        let mut args = vec!["ldcache".to_owned()];
        for dir in &dirs {
            args.push("--folder".to_owned());
            args.push(dir.display().to_string());
        }
        edits.hooks.push(hook(options, &args));
    }
    spec.container_edits = Some(edits);
    Ok(Generated {
        vendor: Vendor::Nvidia,
        spec,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::host_with;
    use super::*;

    #[test]
    fn driver_versions_of_both_kernel_module_flavours() {
        let cases = [
            (
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n",
                "550.54.14",
            ),
            (
                "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build  (dvs-builder@U16-I3-B03-4-3)  Sat Aug 19 01:13:39 UTC 2023\n",
                "535.104.05",
            ),
            (
                "NVRM version: NVIDIA UNIX aarch64 Kernel Module  470.82  Mon\n",
                "470.82",
            ),
        ];
        for (text, want) in cases {
            let (_dir, host) = host_with(&[("proc/driver/nvidia/version", text)]);
            assert_eq!(driver_version(&host).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn an_information_file_without_a_minor_is_named() {
        let (dir, host) = host_with(&[(
            "proc/driver/nvidia/gpus/0000:01:00.0/information",
            "Model: X\nGPU UUID: GPU-1\n",
        )]);
        let err = gpus(&host, &mut Vec::new()).unwrap_err().to_string();
        let file = dir
            .path()
            .join("proc/driver/nvidia/gpus/0000:01:00.0/information");
        assert_eq!(err, format!("{}: no \"Device Minor\" line", file.display()));
    }

    #[test]
    fn a_broken_mig_minors_line_is_named() {
        let (_dir, host) = host_with(&[
            (
                "proc/driver/nvidia/gpus/0000:01:00.0/information",
                "GPU UUID: GPU-1\nDevice Minor: 0\n",
            ),
            (
                "proc/driver/nvidia-caps/mig-minors",
                "config 1\ngpu0/gi1/access x\n",
            ),
        ]);
        let err = gpus(&host, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("mig-minors: invalid line \"gpu0/gi1/access x\""),
            "{err}"
        );
    }

    #[test]
    fn mig_instances_without_a_minor_are_warned_about() {
        let (_dir, host) = host_with(&[
            (
                "proc/driver/nvidia/gpus/0000:01:00.0/information",
                "GPU UUID: GPU-1\nDevice Minor: 0\nBus Location: 0000:01:00.0\n",
            ),
            ("proc/driver/nvidia-caps/mig-minors", "gpu0/gi2/access 30\n"),
            (
                "proc/driver/nvidia/capabilities/gpu0/mig/gi2/ci0/access",
                "",
            ),
            (
                "proc/driver/nvidia/capabilities/gpu0/mig/gi2/ci1/access",
                "",
            ),
        ]);
        let mut warnings = Vec::new();
        let found = gpus(&host, &mut warnings).unwrap();
        assert_eq!(found[0].migs, []);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("gpu0/gi2/ci0 has no minor"),
            "{warnings:?}"
        );
    }
}
