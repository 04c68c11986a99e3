//! AMD: the GPU nodes of the KFD topology (`/sys/class/kfd/kfd/topology/nodes/*`, a node with
//! `gpu_id` 0 is a CPU) and each one's render node (`drm_render_minor`, checked against
//! `/sys/class/drm/renderD*`). `/dev/kfd` is a spec-level node: every AMD container needs it
//! and it is no GPU's own, so two containers with different GPUs do not look like sharing one.

use std::collections::BTreeMap;

use super::{
    GenerateError, Generated, Host, MODEL_ANNOTATION, PCI_ANNOTATION, Vendor, by_number, dir_names,
    existing_node, new_spec, read_optional, read_text, with_all,
};
use crate::cdi::spec::{ContainerEdits, Device};

/// One GPU of the KFD topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The topology node's number.
    pub node: u32,
    pub render_minor: u32,
    /// The KFD node's `name` (a gfx target such as `gfx90a`), when it has one.
    pub name: String,
    /// The PCI address of the render node's device, when sysfs links it.
    pub bus: Option<String>,
}

/// A `key value` line of a KFD `properties` file.
fn property(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The GPUs in topology order (the order ROCm numbers them in).
pub fn gpus(host: &Host) -> Result<Vec<Gpu>, GenerateError> {
    let dir = host.sysfs.join("class/kfd/kfd/topology/nodes");
    let mut names = dir_names(&dir)?;
    by_number(&mut names);
    let mut gpus = Vec::new();
    for name in names {
        let Ok(node) = name.parse::<u32>() else {
            continue;
        };
        let node_dir = dir.join(&name);
        let gpu_id = read_optional(&node_dir.join("gpu_id"))?.unwrap_or_default();
        if gpu_id.trim().is_empty() || gpu_id.trim() == "0" {
            continue;
        }
        let properties_path = node_dir.join("properties");
        let properties = read_text(&properties_path)?;
        let render_minor =
            property(&properties, "drm_render_minor").ok_or_else(|| GenerateError::Parse {
                path: properties_path.clone(),
                why: "no drm_render_minor line".to_owned(),
            })?;
        let render_minor = u32::try_from(render_minor).map_err(|_| GenerateError::Parse {
            path: properties_path,
            why: format!("invalid drm_render_minor {render_minor}"),
        })?;
        let render = host.sysfs.join(format!("class/drm/renderD{render_minor}"));
        let bus = std::fs::canonicalize(render.join("device"))
            .ok()
            .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
        gpus.push(Gpu {
            node,
            render_minor,
            name: read_optional(&node_dir.join("name"))?
                .unwrap_or_default()
                .trim()
                .to_owned(),
            bus,
        });
    }
    if gpus.is_empty() {
        return Err(GenerateError::NoGpu {
            vendor: "AMD",
            why: format!(
                "no GPU node in {} (is the amdgpu kernel module loaded?)",
                dir.display()
            ),
        });
    }
    Ok(gpus)
}

/// The AMD spec: devices `0`..`n-1` in topology order, and `all`.
pub fn generate(host: &Host) -> Result<Generated, GenerateError> {
    let mut warnings = Vec::new();
    let gpus = gpus(host)?;
    let mut spec = new_spec(crate::request::AMD_KIND);
    let mut all = Vec::new();
    for (index, gpu) in gpus.iter().enumerate() {
        let Some(node) = existing_node(
            host,
            &format!("dri/renderD{}", gpu.render_minor),
            &mut warnings,
        ) else {
            warnings.push(format!("GPU {index} (KFD node {}) left out", gpu.node));
            continue;
        };
        let mut annotations = BTreeMap::new();
        if !gpu.name.is_empty() {
            annotations.insert(MODEL_ANNOTATION.to_owned(), gpu.name.clone());
        }
        if let Some(bus) = &gpu.bus {
            annotations.insert(PCI_ANNOTATION.to_owned(), bus.clone());
        }
        all.push(node.clone());
        spec.devices.push(Device {
            name: index.to_string(),
            annotations,
            container_edits: ContainerEdits {
                device_nodes: vec![node],
                ..ContainerEdits::default()
            },
        });
    }
    let missing = format!("no render node under {}", host.dev.display());
    with_all(&mut spec, all, "AMD", missing, &warnings)?;
    let kfd = existing_node(host, "kfd", &mut warnings);
    spec.container_edits = Some(ContainerEdits {
        device_nodes: kfd.into_iter().collect(),
        ..ContainerEdits::default()
    });
    Ok(Generated {
        vendor: Vendor::Amd,
        spec,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::host_with;
    use super::*;

    #[test]
    fn a_gpu_node_without_a_render_minor_is_named() {
        let (dir, host) = host_with(&[
            ("sys/class/kfd/kfd/topology/nodes/1/gpu_id", "17\n"),
            (
                "sys/class/kfd/kfd/topology/nodes/1/properties",
                "simd_count 4\n",
            ),
        ]);
        let err = gpus(&host).unwrap_err().to_string();
        let file = dir
            .path()
            .join("sys/class/kfd/kfd/topology/nodes/1/properties");
        assert_eq!(err, format!("{}: no drm_render_minor line", file.display()));
    }

    #[test]
    fn cpu_nodes_are_skipped_and_gpus_kept_in_node_order() {
        let (_dir, host) = host_with(&[
            ("sys/class/kfd/kfd/topology/nodes/0/gpu_id", "0\n"),
            (
                "sys/class/kfd/kfd/topology/nodes/0/properties",
                "drm_render_minor 0\n",
            ),
            ("sys/class/kfd/kfd/topology/nodes/10/gpu_id", "5\n"),
            (
                "sys/class/kfd/kfd/topology/nodes/10/properties",
                "drm_render_minor 138\n",
            ),
            ("sys/class/kfd/kfd/topology/nodes/2/gpu_id", "6\n"),
            (
                "sys/class/kfd/kfd/topology/nodes/2/properties",
                "drm_render_minor 130\n",
            ),
        ]);
        let minors: Vec<u32> = gpus(&host)
            .unwrap()
            .iter()
            .map(|g| g.render_minor)
            .collect();
        assert_eq!(minors, [130, 138]);
    }
}
