//! The bundle's `config.json`: load with errors that name the file and position, save atomically,
//! and always edit the client's own config, never the output of an earlier create.
//!
//! create writes its edits into config.json (libcontainer reads the bundle from disk). A bundle
//! used again (`cdirun run` twice, as runc users do) would then be edited a second time on top
//! of the first: the first container's cgroupsPath and devices would stick to every later one,
//! and deleting one container would kill the others in the shared cgroup. So the client's exact
//! bytes are kept in a sidecar file, and while config.json is still what cdirun wrote, create
//! starts from them. A failed create puts the client's bytes back.
//!
//! Nothing cdirun writes here is more readable than what the client gave: config.json keeps its
//! owner and mode on every rewrite (its `process.env` may hold secrets), and the sidecar that
//! holds the client's bytes is written with the owner's read and write bits only.
//!
//! [`files`] reads the files cdirun is handed, config.json among them: regular files only.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

pub mod files;

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
    #[error("bundle {bundle}: {CONFIG_FILE} is {kind}, not a regular file")]
    NotRegular { bundle: PathBuf, kind: &'static str },
}

/// The owner and permission bits of a file, given again to every file written in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Owner {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }

    /// For the sidecar: the owner's, with at most read and write for the owner.
    fn private(self) -> Self {
        Self {
            mode: self.mode & 0o600,
            ..self
        }
    }
}

/// Reads `<bundle>/config.json` (a regular file only, see [`files`]) and its owner.
fn read_config(bundle: &Path) -> Result<(Vec<u8>, Owner), BundleError> {
    match files::read_regular(&bundle.join(CONFIG_FILE)) {
        Ok((bytes, meta)) => Ok((bytes, Owner::of(&meta))),
        Err(files::ReadError::Io(cause)) => Err(BundleError::Read {
            bundle: bundle.to_owned(),
            cause,
        }),
        Err(files::ReadError::NotRegular(kind)) => Err(BundleError::NotRegular {
            bundle: bundle.to_owned(),
            kind,
        }),
    }
}

/// Parses `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, BundleError> {
    let (bytes, _) = read_config(bundle)?;
    parse(&bytes, &bundle.join(CONFIG_FILE))
}

/// Parses config bytes; `path` is only used to name the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Spec, BundleError> {
    // serde takes a struct from a JSON array too: `[]` would be an empty spec.
    if let Some(at) = bytes.iter().position(|b| !b.is_ascii_whitespace()) {
        if bytes[at] != b'{' {
            let line_start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            return Err(BundleError::Parse {
                path: path.to_owned(),
                line: bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1,
                column: at - line_start + 1,
                message: "the config must be a JSON object".into(),
            });
        }
    }
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
    /// What an earlier create wrote there from the same source, while config.json may still
    /// say it: the sidecar is replaced before config.json, and a crash between the two must
    /// not make an earlier create's edits look like the client's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    earlier: Option<Spec>,
}

/// A bundle's config as create needs it: the client's config to edit, and what is on disk.
#[derive(Debug)]
pub struct Config {
    /// The client's config: what the edits start from.
    pub source: Spec,
    source_text: String,
    current: Spec,
    /// Whether config.json is what an earlier create wrote (the source came from the sidecar).
    edited_on_disk: bool,
    /// config.json's owner and mode as the client left them.
    owner: Owner,
}

impl Config {
    /// Reads config.json and, when it is still what an earlier create wrote, the client's
    /// config that create started from.
    pub fn load(bundle: &Path) -> Result<Self, BundleError> {
        let path = bundle.join(CONFIG_FILE);
        let (bytes, owner) = read_config(bundle)?;
        let current = parse(&bytes, &path)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let sidecar = fs::read(bundle.join(SOURCE_FILE))
            .ok()
            .and_then(|side| serde_json::from_slice::<Sidecar>(&side).ok())
            .filter(|side| side.edited == current || side.earlier.as_ref() == Some(&current));
        match sidecar {
            Some(side) => {
                let source = parse(side.source.as_bytes(), &path)?;
                Ok(Self {
                    source,
                    source_text: side.source,
                    current,
                    edited_on_disk: true,
                    owner,
                })
            }
            None => Ok(Self {
                source: current.clone(),
                source_text: text,
                current,
                edited_on_disk: false,
                owner,
            }),
        }
    }

    /// Writes `edited` into config.json unless the file already says exactly that. The
    /// sidecar goes first: after a crash between the two writes config.json is still the
    /// client's own and is taken as such, or an earlier create's edit, which the sidecar
    /// still knows as one.
    pub fn save(&self, bundle: &Path, edited: &Spec) -> Result<(), BundleError> {
        if *edited == self.current {
            return Ok(());
        }
        let sidecar = Sidecar {
            source: self.source_text.clone(),
            edited: edited.clone(),
            earlier: self.edited_on_disk.then(|| self.current.clone()),
        };
        let text = serde_json::to_vec(&sidecar).map_err(|err| BundleError::Write {
            path: bundle.join(SOURCE_FILE),
            cause: err.into(),
        })?;
        write_atomically(&bundle.join(SOURCE_FILE), &text, Some(self.owner.private()))?;
        save_as(bundle, edited, Some(self.owner))
    }

    /// Puts the client's config.json back byte for byte and drops the sidecar: what a failed
    /// create leaves is the bundle as the client made it.
    pub fn restore(&self, bundle: &Path) -> Result<(), BundleError> {
        write_atomically(
            &bundle.join(CONFIG_FILE),
            self.source_text.as_bytes(),
            Some(self.owner),
        )?;
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
    save_as(bundle, spec, None)
}

/// [`save`], giving the new file `owner` (else the default owner and mode of a new file).
fn save_as(bundle: &Path, spec: &Spec, owner: Option<Owner>) -> Result<(), BundleError> {
    let path = bundle.join(CONFIG_FILE);
    let mut text = serde_json::to_vec(spec).map_err(|err| BundleError::Write {
        path: path.clone(),
        cause: err.into(),
    })?;
    text.push(b'\n');
    write_atomically(&path, &text, owner)
}

/// Writes a temp file beside `path` and renames it over `path`: readers see the old or the new
/// file, never part of one. With `owner`, the temp file is created with no more than its mode
/// and given its owner and exact mode before any byte is written. No fsync: a config that must
/// survive power loss belongs to a container that does not.
fn write_atomically(path: &Path, bytes: &[u8], owner: Option<Owner>) -> Result<(), BundleError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.cdirun-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(owner) = owner {
            options.mode(owner.mode & 0o777);
        }
        let _ = fs::remove_file(&tmp);
        let mut file = options.open(&tmp)?;
        if let Some(owner) = owner {
            std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
            // After the chown, which clears set-id bits; the umask may have narrowed the mode.
            file.set_permissions(fs::Permissions::from_mode(owner.mode))?;
        }
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
    fn regression_a_json_array_is_not_an_empty_spec() {
        let err = parse(b"  []", Path::new("/b/config.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/b/config.json:1:3: invalid OCI config: the config must be a JSON object"
        );
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

    /// A create killed after it replaced the sidecar but before config.json: config.json
    /// still holds the earlier create's edits, which must not pass for the client's config
    /// (that create's cgroupsPath would stick to every later container of the bundle).
    #[test]
    fn regression_a_crash_between_sidecar_and_config_keeps_the_clients_config() {
        let dir = tempfile::tempdir().unwrap();
        let client = b"{\"ociVersion\": \"1.0.2\", \"hostname\": \"client\"}".to_vec();
        fs::write(dir.path().join(CONFIG_FILE), &client).unwrap();
        Config::load(dir.path())
            .unwrap()
            .save(dir.path(), &spec_with_hostname("first"))
            .unwrap();
        let second = Config::load(dir.path()).unwrap();
        let config_before = fs::read(dir.path().join(CONFIG_FILE)).unwrap();
        second
            .save(dir.path(), &spec_with_hostname("second"))
            .unwrap();
        // The crash: config.json as the first create left it, the sidecar from the second.
        fs::write(dir.path().join(CONFIG_FILE), &config_before).unwrap();
        let third = Config::load(dir.path()).unwrap();
        assert_eq!(third.source.hostname().as_deref(), Some("client"));
        third
            .save(dir.path(), &spec_with_hostname("third"))
            .unwrap();
        let fourth = Config::load(dir.path()).unwrap();
        assert_eq!(fourth.source.hostname().as_deref(), Some("client"));
        fourth.restore(dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join(CONFIG_FILE)).unwrap(), client);
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

    /// A client's 0600 config.json owned by another user (its env may hold tokens): every
    /// file cdirun writes keeps that owner and is no more readable, and a failed create puts
    /// back the bytes and the mode.
    #[test]
    fn regression_rewrites_keep_the_owner_and_mode_and_the_sidecar_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(CONFIG_FILE);
        let client = b"{\"ociVersion\": \"1.0.2\"}".to_vec();
        fs::write(&config, &client).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&config, Some(4242), Some(4343)).unwrap();
        let want = Owner {
            uid: 4242,
            gid: 4343,
            mode: 0o640,
        };
        let owner_of = |path: &Path| Owner::of(&fs::metadata(path).unwrap());

        let loaded = Config::load(dir.path()).unwrap();
        loaded
            .save(dir.path(), &spec_with_hostname("edited"))
            .unwrap();
        assert_eq!(owner_of(&config), want);
        assert_eq!(
            owner_of(&dir.path().join(SOURCE_FILE)),
            Owner {
                mode: 0o600,
                ..want
            }
        );
        loaded.restore(dir.path()).unwrap();
        assert_eq!(owner_of(&config), want);
        assert_eq!(fs::read(&config).unwrap(), client);
    }

    #[test]
    fn a_fifo_or_a_directory_as_config_json_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(CONFIG_FILE);
        nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json is a FIFO, not a regular file"),
            "{err}"
        );
        fs::remove_file(&config).unwrap();
        fs::create_dir(&config).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json is a directory"), "{err}");
    }

    #[test]
    fn missing_bundle_names_the_bundle() {
        let err = load(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bundle"), "{err}");
    }
}
