//! `install docker|containerd|podman`: registers cdirun as a runtime in the client's config file
//! (or prints the file it would write), keeping the file's other settings, owner and mode.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Globals;
use crate::bundle::files;
use crate::cli::InstallArgs;
use crate::install::{self, Runtime};

pub fn install(args: InstallArgs, globals: &Globals) -> Result<()> {
    install::validate_name(&args.name)?;
    let binary = match &args.binary {
        Some(path) => super::absolute(path)?,
        None => std::env::current_exe()
            .context("cannot find cdirun's own path: name it with --binary")?,
    };
    let runtime = Runtime {
        name: args.name.clone(),
        binary,
        systemd_cgroup: args.systemd_cgroup || globals.systemd_cgroup,
    };
    let named = args
        .config
        .clone()
        .unwrap_or_else(|| args.client.default_config().to_owned());
    let path = target(&super::absolute(&named)?)?;
    let (existing, mode) = match files::read_regular(&path) {
        Ok((bytes, meta)) => {
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
            (Some(text), Some(meta))
        }
        Err(err) if err.is_not_found() => (None, None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let edited = args.client.edit(existing.as_deref(), &runtime, &path)?;
    if args.dry_run {
        return Ok(super::print(&edited)?);
    }
    let what = format!(
        "runtime {} ({}) in {}",
        runtime.name,
        runtime.binary.display(),
        path.display()
    );
    if existing.as_deref() == Some(edited.as_str()) {
        super::print(&format!("{what}: already registered, nothing changed\n"))?;
        return Ok(());
    }
    write_atomically(&path, edited.as_bytes(), mode.as_ref())
        .with_context(|| format!("cannot write {}", path.display()))?;
    super::print(&format!(
        "{what}: registered; {}\n",
        args.client.reload_hint().replace("NAME", &runtime.name)
    ))?;
    Ok(())
}

/// The file to write: a link is followed, so that the link stays and its target is edited.
fn target(path: &Path) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)
            .with_context(|| format!("{} is a link to nothing", path.display())),
        _ => Ok(path.to_owned()),
    }
}

/// Writes a temp file beside `path`, gives it the old file's owner and mode (a new file: 0644),
/// and renames it over `path`. A missing parent directory is made.
fn write_atomically(path: &Path, bytes: &[u8], old: Option<&fs::Metadata>) -> Result<()> {
    let Some(dir) = path.parent() else {
        bail!("{} has no parent directory", path.display());
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.cdirun-{}", std::process::id()));
    let mode = old.map_or(0o644, |meta| meta.mode() & 0o7777);
    let write = || -> std::io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&tmp)?;
        if let Some(meta) = old {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
        // After the chown, which clears set-id bits; the umask may have narrowed the mode.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_keeps_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("daemon.json");
        fs::write(&file, "{}").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let meta = fs::metadata(&file).unwrap();
        write_atomically(&file, b"{\"a\": 1}\n", Some(&meta)).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "{\"a\": 1}\n");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        let fresh = dir.path().join("new/sub/config.toml");
        write_atomically(&fresh, b"x", None).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_link_is_followed_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "{}").unwrap();
        let link = dir.path().join("daemon.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(target(&link).unwrap(), fs::canonicalize(&real).unwrap());
    }
}
