//! `ldcache`: refreshes the dynamic linker cache of the container rootfs for injected library
//! dirs (the vendor-neutral counterpart of nvidia-cdi-hook update-ldcache).
//!
//! The dirs go into `/etc/ld.so.conf.d/00-cdirun-<hash>.conf` (so a later ldconfig in the
//! container keeps them) and the image's own ldconfig runs inside the rootfs with the dirs on
//! its command line (so they are cached even when /etc/ld.so.conf lacks the conf.d include).
//! The image's ldconfig, never the host's: the cache format belongs to the image's glibc. An
//! image without ldconfig (busybox, musl) has no cache to refresh and gets a clear error.

use std::time::Duration;

use crate::jail::{JailError, Run};
use crate::rootfs::{Root, RootError, components};
use crate::state::Target;

/// Where ldconfig is looked for in the rootfs, in order.
pub const LDCONFIG_PATHS: [&str; 2] = ["/sbin/ldconfig", "/usr/sbin/ldconfig"];
/// The conf.d dir the library dirs are recorded in.
pub const CONF_DIR: &str = "/etc/ld.so.conf.d";

#[derive(Debug, thiserror::Error)]
pub enum LdcacheError {
    #[error(
        "no ldconfig in the container rootfs {rootfs} (looked for {}): the image has no glibc linker cache to refresh; add ldconfig to the image, pass --ldconfig, or drop this hook for it",
        .looked.join(", ")
    )]
    NoLdconfig {
        rootfs: std::path::PathBuf,
        looked: Vec<String>,
    },
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error("{ldconfig} failed in the container rootfs with {status}: {output}")]
    Failed {
        ldconfig: String,
        status: String,
        output: String,
    },
}

/// The conf.d file for `folders`: named by a hash of its content, so re-running is idempotent
/// and hooks from different CDI specs do not overwrite each other.
pub fn conf_file(folders: &[String]) -> (String, String) {
    let content: String = folders.iter().map(|f| format!("{f}\n")).collect();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in content.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (format!("{CONF_DIR}/00-cdirun-{hash:016x}.conf"), content)
}

pub fn run(
    target: &Target,
    folders: &[String],
    ldconfig: Option<&str>,
    timeout: Duration,
) -> Result<(), LdcacheError> {
    for folder in folders {
        components(folder)?;
    }
    let root = Root::open(&target.rootfs)?;
    let candidates: Vec<&str> = match ldconfig {
        Some(path) => vec![path],
        None => LDCONFIG_PATHS.to_vec(),
    };
    let Some(program) = candidates.iter().find(|p| root.is_file(p)) else {
        return Err(LdcacheError::NoLdconfig {
            rootfs: target.rootfs.clone(),
            looked: candidates.iter().map(|s| s.to_string()).collect(),
        });
    };
    if !folders.is_empty() {
        let (path, content) = conf_file(folders);
        root.write_file(&path, content.as_bytes(), 0o644)?;
    }
    let finished = Run {
        target,
        program,
        args: folders.to_vec(),
        fd3: None,
        keep: 64 * 1024,
        timeout,
    }
    .run()?;
    if !finished.status.success() {
        return Err(LdcacheError::Failed {
            ldconfig: program.to_string(),
            status: finished.describe(),
            output: finished.tail(4096),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_file_is_named_by_its_content() {
        let (a, content) = conf_file(&["/usr/lib/vendor".into(), "/opt/lib".into()]);
        assert_eq!(content, "/usr/lib/vendor\n/opt/lib\n");
        assert!(a.starts_with("/etc/ld.so.conf.d/00-cdirun-") && a.ends_with(".conf"));
        assert_eq!(
            a,
            conf_file(&["/usr/lib/vendor".into(), "/opt/lib".into()]).0
        );
        assert_ne!(a, conf_file(&["/opt/lib".into()]).0);
    }
}
