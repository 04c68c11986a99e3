//! containerd's config.toml: a CRI runtime handler for cdirun, in the table of the config's
//! version (2 for containerd 1.x, 3 for containerd 2.x).

use std::path::Path;

use super::tables::{dotted, parse_toml, set, table_at, toml_kind};
use super::{CRI_ANNOTATIONS, InstallError, Runtime, binary_text};

/// containerd's config.toml: a CRI runtime handler `<name>` with runtime_type
/// io.containerd.runc.v2, the annotations cdirun reads let through, and the options BinaryName
/// and SystemdCgroup. A new file gets `version = 2`.
pub(super) fn containerd(
    text: &str,
    runtime: &Runtime,
    path: &Path,
) -> Result<String, InstallError> {
    let mut doc = parse_toml(text, path)?;
    let version = match doc.get("version") {
        None if doc.is_empty() => {
            doc.insert("version", toml_edit::value(2));
            2
        }
        None => 1,
        Some(item) => match item.as_integer() {
            Some(version) => version,
            None => {
                return Err(InstallError::Shape {
                    path: path.to_owned(),
                    key: "version".to_owned(),
                    found: toml_kind(item.type_name()),
                    want: "an integer",
                });
            }
        },
    };
    let plugin = match version {
        2 => "io.containerd.grpc.v1.cri",
        3 => "io.containerd.cri.v1.runtime",
        other => {
            return Err(InstallError::ContainerdVersion {
                path: path.to_owned(),
                version: other.to_string(),
            });
        }
    };
    let handler = table_at(
        doc.as_table_mut(),
        &["plugins", plugin, "containerd", "runtimes", &runtime.name],
        path,
    )?;
    set(handler, "runtime_type", "io.containerd.runc.v2".into());
    for key in ["container_annotations", "pod_annotations"] {
        let mut list = match handler.get(key) {
            None => toml_edit::Array::new(),
            Some(item) => item
                .as_array()
                .cloned()
                .ok_or_else(|| InstallError::Shape {
                    path: path.to_owned(),
                    key: dotted(&[
                        "plugins",
                        plugin,
                        "containerd",
                        "runtimes",
                        &runtime.name,
                        key,
                    ]),
                    found: toml_kind(item.type_name()),
                    want: "an array",
                })?,
        };
        let before = list.len();
        for want in CRI_ANNOTATIONS {
            if !list.iter().any(|v| v.as_str() == Some(want)) {
                list.push(want);
            }
        }
        if list.len() != before || handler.get(key).is_none() {
            set(handler, key, list.into());
        }
    }
    let options = table_at(
        doc.as_table_mut(),
        &[
            "plugins",
            plugin,
            "containerd",
            "runtimes",
            &runtime.name,
            "options",
        ],
        path,
    )?;
    set(options, "BinaryName", binary_text(runtime).into());
    set(options, "SystemdCgroup", runtime.systemd_cgroup.into());
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::install::Client;
    use crate::install::tests::runtime;

    #[test]
    fn containerd_systemd_cgroup_sets_the_option() {
        let text = Client::Containerd
            .edit(None, &runtime(false), Path::new("/f"))
            .unwrap();
        let text = Client::Containerd
            .edit(Some(&text), &runtime(true), Path::new("/f"))
            .unwrap();
        assert!(text.contains("SystemdCgroup = true\n"), "{text}");
        assert!(!text.contains("SystemdCgroup = false"), "{text}");
    }
}
