//! Client configuration that registers cdirun as a runtime: Docker's daemon.json, containerd's
//! config.toml and podman's containers.conf. Pure: text in, text out; `commands::install` reads
//! and writes the files. Every other setting of the file is kept (TOML files keep their comments
//! and layout through toml_edit), and applying an edit twice gives the same text.
//!
//! `Client::edit` checks what every client shares and hands the text to the client's own edit:
//! `docker` (JSON), `containerd` and `podman` (TOML, through the helpers in `tables`).

use std::fmt;
use std::path::{Path, PathBuf};

mod containerd;
mod docker;
mod podman;
mod tables;

use containerd::containerd;
use docker::docker;
use podman::podman;

/// A client whose configuration cdirun can register itself in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    Docker,
    Containerd,
    Podman,
}

impl Client {
    /// The file the client reads by default.
    pub fn default_config(self) -> &'static Path {
        Path::new(match self {
            Client::Docker => "/etc/docker/daemon.json",
            Client::Containerd => "/etc/containerd/config.toml",
            Client::Podman => "/etc/containers/containers.conf",
        })
    }

    /// What the user does next for the client to read the new file.
    pub fn reload_hint(self) -> &'static str {
        match self {
            Client::Docker => "restart dockerd to load it (docker run --runtime NAME ...)",
            Client::Containerd => "restart containerd to load it (RuntimeClass handler NAME)",
            Client::Podman => "podman reads it on its next run (podman --runtime NAME ...)",
        }
    }

    /// Edits `existing` (the file's text; `None` when there is no file) so that it registers
    /// `runtime`. `path` only names the file in errors.
    pub fn edit(
        self,
        existing: Option<&str>,
        runtime: &Runtime,
        path: &Path,
    ) -> Result<String, InstallError> {
        if runtime.systemd_cgroup && self != Client::Containerd {
            return Err(InstallError::SystemdCgroup(self));
        }
        match self {
            Client::Docker => docker(existing.unwrap_or(""), runtime, path),
            Client::Containerd => containerd(existing.unwrap_or(""), runtime, path),
            Client::Podman => podman(existing.unwrap_or(""), runtime, path),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Client::Docker => "docker",
            Client::Containerd => "containerd",
            Client::Podman => "podman",
        })
    }
}

/// The runtime entry to register.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The name clients select it by (`--runtime NAME`, a RuntimeClass handler).
    pub name: String,
    /// The absolute path of the cdirun binary.
    pub binary: PathBuf,
    /// containerd only: its shim passes `--systemd-cgroup` and `slice:prefix:name` paths.
    pub systemd_cgroup: bool,
}

/// Annotations containerd's CRI plugin must pass through to config.json for cdirun's requests.
pub const CRI_ANNOTATIONS: [&str; 2] = ["cdi.k8s.io/*", "io.cdirun.*"];

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}:{line}:{column}: invalid JSON: {cause}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        cause: String,
    },
    #[error("{path}: invalid TOML: {cause}")]
    Toml { path: PathBuf, cause: String },
    #[error("{path}: {key} is {found}, not {want}: fix or remove it and run this again")]
    Shape {
        path: PathBuf,
        key: String,
        found: &'static str,
        want: &'static str,
    },
    #[error(
        "{path}: a containerd config of version {version} (a file without `version` is version 1): \
         cdirun writes version 2 (containerd 1.x) and 3 (containerd 2.x) configs; convert it first"
    )]
    ContainerdVersion { path: PathBuf, version: String },
    #[error(
        "--systemd-cgroup is for containerd only: {0} picks the cgroup driver for every runtime \
         (docker: exec-opts native.cgroupdriver=systemd; podman: [engine] cgroup_manager) and \
         passes --systemd-cgroup to cdirun itself"
    )]
    SystemdCgroup(Client),
    #[error("invalid runtime name {0:?}: use letters, digits, '_', '-' and '.'")]
    Name(String),
}

/// Checks a runtime name: it becomes a JSON key, a TOML key and a word on a command line.
pub fn validate_name(name: &str) -> Result<(), InstallError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(InstallError::Name(name.to_owned()));
    }
    Ok(())
}

fn binary_text(runtime: &Runtime) -> String {
    runtime.binary.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn runtime(systemd_cgroup: bool) -> Runtime {
        Runtime {
            name: "cdirun".to_owned(),
            binary: PathBuf::from("/opt/cdirun/bin/cdirun"),
            systemd_cgroup,
        }
    }

    fn edit(client: Client, text: Option<&str>) -> Result<String, InstallError> {
        client.edit(text, &runtime(false), Path::new("/etc/f"))
    }

    /// name, client, existing file, want (whole text).
    #[test]
    fn edits_register_the_runtime_and_keep_the_rest() {
        let cases: &[(&str, Client, Option<&str>, &str)] = &[
            (
                "docker: no file",
                Client::Docker,
                None,
                "{\n  \"runtimes\": {\n    \"cdirun\": {\n      \"path\": \"/opt/cdirun/bin/cdirun\"\n    }\n  }\n}\n",
            ),
            (
                "docker: other settings and runtimes kept, an old path replaced, runtimeArgs kept",
                Client::Docker,
                Some(
                    r#"{"log-level": "warn", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"},
                        "cdirun": {"path": "/old", "runtimeArgs": ["--debug"]}}, "live-restore": true}"#,
                ),
                r#"{
  "live-restore": true,
  "log-level": "warn",
  "runtimes": {
    "cdirun": {
      "path": "/opt/cdirun/bin/cdirun",
      "runtimeArgs": [
        "--debug"
      ]
    },
    "nvidia": {
      "path": "nvidia-container-runtime"
    }
  }
}
"#,
            ),
            (
                "containerd: no file",
                Client::Containerd,
                None,
                r#"version = 2

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun]
runtime_type = "io.containerd.runc.v2"
container_annotations = ["cdi.k8s.io/*", "io.cdirun.*"]
pod_annotations = ["cdi.k8s.io/*", "io.cdirun.*"]

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun.options]
BinaryName = "/opt/cdirun/bin/cdirun"
SystemdCgroup = false
"#,
            ),
            (
                "containerd: comments, other plugins and a listed annotation kept; Root kept",
                Client::Containerd,
                Some(
                    r#"# node config
version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "pause:3.9" # pinned
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun]
    container_annotations = ["example.com/*", "cdi.k8s.io/*"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun.options]
      Root = "/run/containerd/cdirun"
"#,
                ),
                r#"# node config
version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "pause:3.9" # pinned
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun]
    container_annotations = ["example.com/*", "cdi.k8s.io/*", "io.cdirun.*"]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["cdi.k8s.io/*", "io.cdirun.*"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun.options]
      Root = "/run/containerd/cdirun"
      BinaryName = "/opt/cdirun/bin/cdirun"
      SystemdCgroup = false
"#,
            ),
            (
                "containerd 2.x (version 3): the runtime plugin's table",
                Client::Containerd,
                Some("version = 3\n"),
                r#"version = 3

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.cdirun]
runtime_type = "io.containerd.runc.v2"
container_annotations = ["cdi.k8s.io/*", "io.cdirun.*"]
pod_annotations = ["cdi.k8s.io/*", "io.cdirun.*"]

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.cdirun.options]
BinaryName = "/opt/cdirun/bin/cdirun"
SystemdCgroup = false
"#,
            ),
            (
                "podman: no file",
                Client::Podman,
                None,
                "[engine.runtimes]\ncdirun = [\"/opt/cdirun/bin/cdirun\"]\n",
            ),
            (
                "podman: comments, [engine] keys and other runtimes kept, an old path replaced",
                Client::Podman,
                Some(
                    "# site settings\n[containers]\nnetns = \"host\"\n\n[engine]\ncgroup_manager = \"cgroupfs\" # no systemd\n\n[engine.runtimes]\nrunc = [\"/usr/bin/runc\"]\ncdirun = [\"/old\"]\n",
                ),
                "# site settings\n[containers]\nnetns = \"host\"\n\n[engine]\ncgroup_manager = \"cgroupfs\" # no systemd\n\n[engine.runtimes]\nrunc = [\"/usr/bin/runc\"]\ncdirun = [\"/opt/cdirun/bin/cdirun\"]\n",
            ),
        ];
        for (name, client, text, want) in cases {
            let got = edit(*client, *text).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(got, *want, "{name}");
            let again = edit(*client, Some(&got)).unwrap();
            assert_eq!(again, got, "{name}: a second run changed the file");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_offending_key() {
        let cases: &[(Client, &str, &str)] = &[
            (
                Client::Docker,
                "{\n  \"debug\": true,\n}",
                "/etc/f:3:1: invalid JSON: trailing comma",
            ),
            (
                Client::Docker,
                "[1]",
                "/etc/f: the top level is an array, not an object",
            ),
            (
                Client::Docker,
                r#"{"runtimes": ["x"]}"#,
                "/etc/f: \"runtimes\" is an array, not an object",
            ),
            (
                Client::Docker,
                r#"{"runtimes": {"cdirun": "/usr/bin/cdirun"}}"#,
                "/etc/f: \"runtimes\".\"cdirun\" is a string, not an object",
            ),
            (
                Client::Podman,
                "[engine\n",
                "/etc/f: invalid TOML: TOML parse error at line 1",
            ),
            (
                Client::Podman,
                "engine = \"x\"\n",
                "/etc/f: engine is a string, not a table",
            ),
            (
                Client::Containerd,
                "root = \"/var/lib/containerd\"\n",
                "/etc/f: a containerd config of version 1",
            ),
            (
                Client::Containerd,
                "version = \"2\"\n",
                "/etc/f: version is a string, not an integer",
            ),
            (
                Client::Containerd,
                "version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = 1\n",
                "/etc/f: plugins.\"io.containerd.grpc.v1.cri\" is an integer, not a table",
            ),
        ];
        for (client, text, want) in cases {
            let err = edit(*client, Some(text)).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "{client}: {err:?} does not start with {want:?}"
            );
        }
    }

    #[test]
    fn systemd_cgroup_is_refused_where_the_client_chooses_the_driver() {
        for client in [Client::Docker, Client::Podman] {
            let err = client
                .edit(None, &runtime(true), Path::new("/f"))
                .unwrap_err();
            assert!(matches!(err, InstallError::SystemdCgroup(_)), "{err}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("cdirun-gpu.1").is_ok());
        for bad in ["", "a b", "a\"b", "a/b", "a]"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn another_name_is_its_own_entry() {
        let rt = Runtime {
            name: "cdirun-test".to_owned(),
            ..runtime(false)
        };
        let text = Client::Podman
            .edit(
                Some("[engine.runtimes]\ncdirun = [\"/usr/bin/cdirun\"]\n"),
                &rt,
                Path::new("/f"),
            )
            .unwrap();
        assert_eq!(
            text,
            "[engine.runtimes]\ncdirun = [\"/usr/bin/cdirun\"]\ncdirun-test = [\"/opt/cdirun/bin/cdirun\"]\n"
        );
    }
}
