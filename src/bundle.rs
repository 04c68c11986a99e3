//! The bundle's `config.json`: load with errors that name the file and position, save atomically,
//! and always edit the client's own config, never the output of an earlier create.
//!
//! create writes its edits into config.json (libcontainer reads the bundle from disk). A bundle
//! used again (`cdirun run` twice, as runc users do) would then be edited a second time on top
//! of the first: the first container's cgroupsPath and devices would stick to every later one,
//! and deleting one container would kill the others in the shared cgroup. So the client's exact
//! bytes are kept in a sidecar file, and while config.json is still what cdirun wrote, create
//! starts from them. A failed create puts the client's bytes back.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

/// The file name the OCI bundle layout fixes.
pub const CONFIG_FILE: &str = "config.json";
/// Beside config.json: the client's config and the edited config cdirun wrote from it.
pub const SOURCE_FILE: &str = ".cdirun-source.json";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {bundle}: cannot read {CONFIG_FILE}: {cause}")]
    Read {
        bundle: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid OCI config: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Parses `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, BundleError> {
    let path = bundle.join(CONFIG_FILE);
    let bytes = fs::read(&path).map_err(|cause| BundleError::Read {
        bundle: bundle.to_owned(),
        cause,
    })?;
    parse(&bytes, &path)
}

/// Parses config bytes; `path` is only used to name the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Spec, BundleError> {
    serde_json::from_slice(bytes).map_err(|err| BundleError::Parse {
        path: path.to_owned(),
        line: err.line(),
        column: err.column(),
        // serde_json appends " at line L column C"; the prefix already says where.
        message: strip_position(&err.to_string()),
    })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The sidecar's contents.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    /// The client's config.json, byte for byte.
    source: String,
    /// What cdirun wrote into config.json from it.
    edited: Spec,
}

/// A bundle's config as create needs it: the client's config to edit, and what is on disk.
#[derive(Debug)]
pub struct Config {
    /// The client's config: what the edits start from.
    pub source: Spec,
    source_text: String,
    current: Spec,
}

impl Config {
    /// Reads config.json and, when it is still what an earlier create wrote, the client's
    /// config that create started from.
    pub fn load(bundle: &Path) -> Result<Self, BundleError> {
        let path = bundle.join(CONFIG_FILE);
        let bytes = fs::read(&path).map_err(|cause| BundleError::Read {
            bundle: bundle.to_owned(),
            cause,
        })?;
        let current = parse(&bytes, &path)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let sidecar = fs::read(bundle.join(SOURCE_FILE))
            .ok()
            .and_then(|side| serde_json::from_slice::<Sidecar>(&side).ok())
            .filter(|side| side.edited == current);
        match sidecar {
            Some(side) => {
                let source = parse(side.source.as_bytes(), &path)?;
                Ok(Self {
                    source,
                    source_text: side.source,
                    current,
                })
            }
            None => Ok(Self {
                source: current.clone(),
                source_text: text,
                current,
            }),
        }
    }

    /// Writes `edited` into config.json unless the file already says exactly that. The
    /// sidecar goes first: after a crash between the two writes config.json is still the
    /// client's own and is taken as such.
    pub fn save(&self, bundle: &Path, edited: &Spec) -> Result<(), BundleError> {
        if *edited == self.current {
            return Ok(());
        }
        let sidecar = Sidecar {
            source: self.source_text.clone(),
            edited: edited.clone(),
        };
        let text = serde_json::to_vec(&sidecar).map_err(|err| BundleError::Write {
            path: bundle.join(SOURCE_FILE),
            cause: err.into(),
        })?;
        write_atomically(&bundle.join(SOURCE_FILE), &text)?;
        save(bundle, edited)
    }

    /// Puts the client's config.json back byte for byte and drops the sidecar: what a failed
    /// create leaves is the bundle as the client made it.
    pub fn restore(&self, bundle: &Path) -> Result<(), BundleError> {
        write_atomically(&bundle.join(CONFIG_FILE), self.source_text.as_bytes())?;
        match fs::remove_file(bundle.join(SOURCE_FILE)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(BundleError::Write {
                path: bundle.join(SOURCE_FILE),
                cause: err,
            }),
            _ => Ok(()),
        }
    }
}

/// Replaces `<bundle>/config.json` atomically: a temp file in the bundle dir, then rename, so a
/// crash leaves either the old or the new config, never half of one.
pub fn save(bundle: &Path, spec: &Spec) -> Result<(), BundleError> {
    let path = bundle.join(CONFIG_FILE);
    let mut text = serde_json::to_vec(spec).map_err(|err| BundleError::Write {
        path: path.clone(),
        cause: err.into(),
    })?;
    text.push(b'\n');
    write_atomically(&path, &text)
}

/// Writes a temp file beside `path` and renames it over `path`: readers see the old or the new
/// file, never part of one. No fsync: a config that must survive power loss belongs to a
/// container that does not.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.cdirun-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        fs::rename(&tmp, path)
    };
    write().map_err(|cause| {
        let _ = fs::remove_file(&tmp);
        BundleError::Write {
            path: path.to_owned(),
            cause,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_file_line_and_column() {
        let err = parse(
            b"{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}",
            Path::new("/b/config.json"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/b/config.json:3:3: invalid OCI config: "),
            "{msg}"
        );
        assert!(!msg.contains(" at line "), "{msg}");
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::default();
        save(dir.path(), &spec).unwrap();
        assert_eq!(load(dir.path()).unwrap(), spec);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFIG_FILE)]);
    }

    fn spec_with_hostname(name: &str) -> Spec {
        let mut spec = Spec::default();
        spec.set_hostname(Some(name.to_owned()));
        spec
    }

    #[test]
    fn regression_a_reused_bundle_is_edited_from_the_clients_config() {
        let dir = tempfile::tempdir().unwrap();
        let client = b"{\"ociVersion\": \"1.0.2\", \"hostname\": \"client\"}".to_vec();
        fs::write(dir.path().join(CONFIG_FILE), &client).unwrap();

        let first = Config::load(dir.path()).unwrap();
        first
            .save(dir.path(), &spec_with_hostname("edited-by-first"))
            .unwrap();
        // The next create sees the client's config, not the first create's output.
        let second = Config::load(dir.path()).unwrap();
        assert_eq!(second.source.hostname().as_deref(), Some("client"));

        // A client that rewrites config.json after a create is taken at its word.
        save(dir.path(), &spec_with_hostname("rewritten")).unwrap();
        let third = Config::load(dir.path()).unwrap();
        assert_eq!(third.source.hostname().as_deref(), Some("rewritten"));
    }

    #[test]
    fn restore_puts_the_clients_bytes_back() {
        let dir = tempfile::tempdir().unwrap();
        let client = b"{ \"ociVersion\":\"1.0.2\" ,\n \"hostname\": \"client\" }\n".to_vec();
        fs::write(dir.path().join(CONFIG_FILE), &client).unwrap();
        let config = Config::load(dir.path()).unwrap();
        config
            .save(dir.path(), &spec_with_hostname("edited"))
            .unwrap();
        config.restore(dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join(CONFIG_FILE)).unwrap(), client);
        assert!(!dir.path().join(SOURCE_FILE).exists());
    }

    #[test]
    fn missing_bundle_names_the_bundle() {
        let err = load(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bundle"), "{err}");
    }
}
