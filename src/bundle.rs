//! The bundle's `config.json`: load with errors that name the file and position, save atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

/// The file name the OCI bundle layout fixes.
pub const CONFIG_FILE: &str = "config.json";

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

/// Replaces `<bundle>/config.json` atomically: a temp file in the bundle dir, then rename, so a
/// crash leaves either the old or the new config, never half of one.
pub fn save(bundle: &Path, spec: &Spec) -> Result<(), BundleError> {
    let path = bundle.join(CONFIG_FILE);
    let tmp = bundle.join(format!(".{CONFIG_FILE}.cdirun-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        serde_json::to_writer(&mut file, spec)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|cause| {
        let _ = fs::remove_file(&tmp);
        BundleError::Write { path, cause }
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

    #[test]
    fn missing_bundle_names_the_bundle() {
        let err = load(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bundle"), "{err}");
    }
}
