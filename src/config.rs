//! `/etc/cdirun/config.toml` (or the file `CDIRUN_CONFIG` names): strict keys, embedded defaults.
//!
//! Every key is optional. An unknown key is an error naming the key and the file, so a typo never
//! silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the config file is looked for when `CDIRUN_CONFIG` is not set.
pub const DEFAULT_PATH: &str = "/etc/cdirun/config.toml";
/// Environment variable naming another config file.
pub const ENV_VAR: &str = "CDIRUN_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} named by {ENV_VAR} does not exist")]
    Missing { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The slice owner cdirun acts for.
    pub owner: String,
    /// Node-wide claims (GPU ledger, MPS references); deliberately not under `--root`.
    pub state_dir: PathBuf,
    pub cdi: CdiConfig,
    pub gpu: GpuConfig,
    pub mps: MpsConfig,
    pub time_slice: TimeSliceConfig,
    pub slices: SlicesConfig,
    pub hooks: HooksConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CdiConfig {
    pub spec_dirs: Vec<PathBuf>,
    pub annotation_prefixes: Vec<String>,
    /// Whether NVIDIA_VISIBLE_DEVICES / AMD_VISIBLE_DEVICES can request devices at all.
    pub accept_env: bool,
    /// What those variables do when they would request devices for a container without
    /// CAP_SYS_ADMIN in its bounding set (see `request::precedence`).
    pub env_when_unprivileged: EnvWhenUnprivileged,
}

/// `[cdi] env-when-unprivileged`: env device requests from a container without CAP_SYS_ADMIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvWhenUnprivileged {
    /// The variables are requests, as for a privileged container (NVIDIA's default).
    Accept,
    /// The variables request nothing; the container gets no device from them.
    Ignore,
    /// The create fails, naming the variable and this key.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GpuConfig {
    pub default_vendor: String,
    pub nccl_socket_ifname: String,
    /// Whether the vendor and distributed env cdirun computes replaces a value the client set
    /// in config.json (default: the client's value wins).
    pub override_user_env: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MpsLifetime {
    NoLaunch,
    PerRun,
    Persistent,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MpsConfig {
    pub lifetime: MpsLifetime,
    pub root: PathBuf,
    pub control: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeSliceConfig {
    pub smi: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SlicesConfig {
    pub default: String,
    /// Client cgroupsPath prefixes used as they are. The default holds the kubelet's pod
    /// hierarchy (`/kubepods` with cgroupfs, `kubepods.slice` with systemd): a pod's containers
    /// must stay in the pod's cgroup, where the kubelet's pod limits and accounting apply.
    pub respect: Vec<String>,
    pub owners: BTreeMap<String, Vec<String>>,
    /// Limits per slice (path or unit name), written when cdirun creates the acting owner's
    /// slices; slices of other owners are theirs to limit.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, crate::cgroup::Limits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HooksConfig {
    pub dirs: Vec<PathBuf>,
    pub on_error: OnError,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            owner: "workload".into(),
            state_dir: "/run/cdirun-state".into(),
            cdi: CdiConfig::default(),
            gpu: GpuConfig::default(),
            mps: MpsConfig::default(),
            time_slice: TimeSliceConfig::default(),
            slices: SlicesConfig::default(),
            hooks: HooksConfig::default(),
        }
    }
}

impl Default for CdiConfig {
    fn default() -> Self {
        Self {
            spec_dirs: vec!["/etc/cdi".into(), "/var/run/cdi".into()],
            annotation_prefixes: vec!["cdi.k8s.io/".into()],
            accept_env: true,
            env_when_unprivileged: EnvWhenUnprivileged::Accept,
        }
    }
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            default_vendor: "nvidia".into(),
            nccl_socket_ifname: "eth0".into(),
            override_user_env: false,
        }
    }
}

impl Default for MpsConfig {
    fn default() -> Self {
        Self {
            lifetime: MpsLifetime::PerRun,
            root: "/run/cdirun-state/mps".into(),
            control: "nvidia-cuda-mps-control".into(),
        }
    }
}

impl Default for TimeSliceConfig {
    fn default() -> Self {
        Self {
            smi: "nvidia-smi".into(),
        }
    }
}

/// Where the kubelet puts pods: its cgroupfs root and its systemd slice (`kubepods.slice`, with
/// `kubepods-besteffort-pod<UID>.slice` and friends below it).
pub const KUBELET_SLICES: [&str; 2] = ["/kubepods", "/kubepods.slice"];

impl Default for SlicesConfig {
    fn default() -> Self {
        Self {
            default: "workload.slice".into(),
            respect: KUBELET_SLICES.iter().map(|s| s.to_string()).collect(),
            owners: BTreeMap::from([
                ("workload".into(), vec!["workload.slice".into()]),
                ("pact".into(), vec!["pact.slice".into()]),
            ]),
            limits: BTreeMap::new(),
        }
    }
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            dirs: vec![
                "/usr/share/containers/oci/hooks.d".into(),
                "/etc/containers/oci/hooks.d".into(),
                "/etc/cdirun/hooks.d".into(),
            ],
            on_error: OnError::Fail,
        }
    }
}

/// A loaded config and the file it came from (`None`: no file, embedded defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub path: Option<PathBuf>,
    pub config: Config,
}

impl Config {
    /// Rootless (see crate::rootless), the embedded `state-dir` (and the MPS root under it),
    /// which only root may write, becomes `state_dir`; a configured one is kept.
    pub fn for_rootless(mut self, state_dir: &Path) -> Self {
        let defaults = Config::default();
        if self.state_dir == defaults.state_dir {
            self.state_dir = state_dir.to_owned();
        }
        if self.mps.root == defaults.mps.root {
            self.mps.root = state_dir.join("mps");
        }
        self
    }

    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().replace('\n', " "),
        })
    }

    /// Loads the file at `path`; a missing file means embedded defaults.
    pub fn load_from(path: &Path) -> Result<Loaded, ConfigError> {
        let read_error = |cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        };
        match crate::bundle::files::read_regular(path) {
            Ok((bytes, _)) => {
                let text = String::from_utf8(bytes).map_err(|err| {
                    read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
                })?;
                Ok(Loaded {
                    path: Some(path.to_owned()),
                    config: Self::parse(&text, path)?,
                })
            }
            Err(err) if err.is_not_found() => Ok(Loaded {
                path: None,
                config: Self::default(),
            }),
            Err(crate::bundle::files::ReadError::Io(cause)) => Err(read_error(cause)),
            Err(err @ crate::bundle::files::ReadError::NotRegular(_)) => Err(read_error(
                std::io::Error::new(std::io::ErrorKind::InvalidInput, err.to_string()),
            )),
        }
    }

    /// Loads the file `CDIRUN_CONFIG` names (it must exist), else the default path if present.
    pub fn load(env_value: Option<&std::ffi::OsStr>) -> Result<Loaded, ConfigError> {
        match env_value {
            Some(named) if !named.is_empty() => {
                let path = PathBuf::from(named);
                let loaded = Self::load_from(&path)?;
                if loaded.path.is_none() {
                    return Err(ConfigError::Missing { path });
                }
                Ok(loaded)
            }
            _ => Self::load_from(Path::new(DEFAULT_PATH)),
        }
    }
}

/// How a value is spelled in a JSON or TOML file: serde's name of a unit enum variant
/// (`"RLIMIT_NOFILE"`, `"cgroup"`, `"exclusive"`); `None` for a value that is no string there.
pub fn serde_name(value: &impl Serialize) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_a_fifo_as_the_config_file_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Config::load(Some(fifo.as_os_str()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml: it is a FIFO, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_gives_embedded_defaults() {
        assert_eq!(
            Config::parse("", Path::new("c.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn documented_defaults_parse_to_embedded_defaults() {
        let text = r#"
owner = "workload"
state-dir = "/run/cdirun-state"
[cdi]
spec-dirs = ["/etc/cdi", "/var/run/cdi"]
annotation-prefixes = ["cdi.k8s.io/"]
accept-env = true
env-when-unprivileged = "accept"
[gpu]
default-vendor = "nvidia"
nccl-socket-ifname = "eth0"
override-user-env = false
[mps]
lifetime = "per_run"
root = "/run/cdirun-state/mps"
control = "nvidia-cuda-mps-control"
[time-slice]
smi = "nvidia-smi"
[slices]
default = "workload.slice"
respect = ["/kubepods", "/kubepods.slice"]
[slices.owners]
workload = ["workload.slice"]
pact = ["pact.slice"]
[hooks]
dirs = ["/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d", "/etc/cdirun/hooks.d"]
on-error = "fail"
"#;
        assert_eq!(
            Config::parse(text, Path::new("c.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_key_and_file() {
        let err = Config::parse("[cdi]\nspec-dir = []\n", Path::new("/x/c.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/c.toml"), "{msg}");
        assert!(msg.contains("spec-dir"), "{msg}");
    }

    #[test]
    fn slice_limits_parse_strictly() {
        let text = r#"
[slices.limits."pact-gpu.slice"]
memory-max = 1073741824
cpu-weight = 200
io-max = ["8:0 rbps=1048576"]
"#;
        let config = Config::parse(text, Path::new("c.toml")).unwrap();
        let limits = &config.slices.limits["pact-gpu.slice"];
        assert_eq!(limits.memory_max, Some(1 << 30));
        assert_eq!(limits.cpu_weight, Some(200));
        assert_eq!(limits.io_max, ["8:0 rbps=1048576"]);
        let err = Config::parse(
            "[slices.limits.\"x.slice\"]\nmemory = 1\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn env_when_unprivileged_takes_its_three_values_only() {
        for (text, want) in [
            ("accept", EnvWhenUnprivileged::Accept),
            ("ignore", EnvWhenUnprivileged::Ignore),
            ("refuse", EnvWhenUnprivileged::Refuse),
        ] {
            let config = Config::parse(
                &format!("[cdi]\nenv-when-unprivileged = {text:?}\n"),
                Path::new("c.toml"),
            )
            .unwrap();
            assert_eq!(config.cdi.env_when_unprivileged, want, "{text}");
        }
        let err = Config::parse(
            "[cdi]\nenv-when-unprivileged = \"deny\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("deny"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_an_error() {
        let err =
            Config::parse("[mps]\nlifetime = \"sometimes\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_named_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("none.toml");
        assert_eq!(
            Config::load_from(&absent).unwrap(),
            Loaded {
                path: None,
                config: Config::default()
            }
        );
        assert!(matches!(
            Config::load(Some(absent.as_os_str())),
            Err(ConfigError::Missing { .. })
        ));
    }
}
