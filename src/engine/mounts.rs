//! Mounts that runc takes and libcontainer 0.7 refuses with "failed to prepare rootfs", given to
//! libcontainer in a form it takes ([`fix`], on the edited config just before it is saved). Each
//! goes when libcontainer takes the mount as runc does:
//!
//! - Options runc and crun act on themselves (`tmpcopyup`): libcontainer hands them to the kernel
//!   as mount data. podman sends `tmpcopyup` on every `--tmpfs` and on the tmpfs mounts of
//!   `--read-only` containers. It asks for the image's files at the mount point to be copied into
//!   the new tmpfs; libcontainer cannot do that, so the option is dropped here and cdirun copies
//!   after libcontainer mounted the tmpfs (see `crate::engine::finish`, which reads the option
//!   from the client's config).
//! - A filesystem mount without `source` (`ctr run --mount type=tmpfs,dst=/x`): the source of a
//!   tmpfs, proc or similar is only a name, so it gets the type's name. A bind mount without a
//!   source stays an error.
//! - `linux.rootfsPropagation` `rprivate`, `rslave`, `rshared`, `runbindable` (podman sends
//!   `rslave` whenever a volume has slave or shared propagation): libcontainer knows only the
//!   plain names, which it already applies the recursive way. See [`ROOT_PROPAGATIONS`].

use libcontainer::oci_spec::runtime::Spec;

/// Every `linux.rootfsPropagation` runc takes, and the value libcontainer 0.7 is given for it
/// (`None`: the field is left out, libcontainer's default, which is runc's: rslave).
///
/// libcontainer remounts `/` with `MS_REC` and MS_PRIVATE (`private`), MS_SHARED (`shared`) or
/// MS_SLAVE (`slave`, `unbindable`, unset) before it bind-mounts the rootfs, so its `private`,
/// `slave` and `shared` are runc's `rprivate`, `rslave` and `rshared` at that step. After
/// pivot_root it sets MS_SHARED (`shared`) or MS_UNBINDABLE (`unbindable`) on the new root, as
/// runc does since 1.2 (runc 1.1 left the root private: opencontainers/runc#1755). The
/// r-variants therefore map to the plain names. `runbindable` makes runc's own bind mount of
/// the rootfs fail (the tree it binds from is unbindable by then); here it gives the
/// container an unbindable root, which is what it asks for. runc's non-recursive `private`
/// and `slave` touch only the host's `/` mount before the rootfs is bound from another one;
/// libcontainer's recursive reading keeps container mounts from propagating to the host.
pub const ROOT_PROPAGATIONS: [(&str, Option<&str>); 9] = [
    ("", None),
    ("private", Some("private")),
    ("rprivate", Some("private")),
    ("slave", Some("slave")),
    ("rslave", Some("slave")),
    ("shared", Some("shared")),
    ("rshared", Some("shared")),
    ("unbindable", Some("unbindable")),
    ("runbindable", Some("unbindable")),
];

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "linux.rootfsPropagation {value:?} is not a mount propagation: use private, rprivate, slave, rslave, shared, rshared, unbindable or runbindable"
    )]
    RootPropagation { value: String },
}

/// What libcontainer is to be given for the spec's `linux.rootfsPropagation` (see
/// [`ROOT_PROPAGATIONS`]); a value runc would refuse is an error naming it. create checks this
/// before any edit takes a claim.
pub fn root_propagation(spec: &Spec) -> Result<Option<&'static str>, MountError> {
    let Some(value) = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.rootfs_propagation().as_deref())
    else {
        return Ok(None);
    };
    ROOT_PROPAGATIONS
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, given)| *given)
        .ok_or_else(|| MountError::RootPropagation {
            value: value.to_owned(),
        })
}

/// Gives libcontainer a rootfsPropagation it knows, meaning what the client's value means to
/// runc.
fn set_root_propagation(spec: &mut Spec) -> Result<(), MountError> {
    let given = root_propagation(spec)?;
    if let Some(linux) = spec.linux_mut().as_mut() {
        if linux.rootfs_propagation().as_deref() != given {
            linux.set_rootfs_propagation(given.map(str::to_owned));
        }
    }
    Ok(())
}

/// Options removed from every mount; `crate::engine::finish` acts on them instead.
pub const UNSUPPORTED_OPTIONS: [&str; 2] = ["tmpcopyup", "notmpcopyup"];

/// Rewrites the mounts of `spec` that libcontainer would refuse into what it takes and does
/// what runc does with (see the module's list). Idempotent; `spec` is untouched on error.
pub fn fix(spec: &mut Spec) -> Result<(), MountError> {
    set_root_propagation(spec)?;
    let Some(mounts) = spec.mounts_mut() else {
        return Ok(());
    };
    for mount in mounts.iter_mut() {
        if mount.source().is_none() && !is_bind(mount) {
            mount.set_source(mount.typ().as_ref().map(std::path::PathBuf::from));
        }
        let Some(options) = mount.options() else {
            continue;
        };
        if !options
            .iter()
            .any(|o| UNSUPPORTED_OPTIONS.contains(&o.as_str()))
        {
            continue;
        }
        let kept: Vec<String> = options
            .iter()
            .filter(|o| !UNSUPPORTED_OPTIONS.contains(&o.as_str()))
            .cloned()
            .collect();
        tracing::debug!(
            destination = %mount.destination().display(),
            "dropping tmpcopyup from the mount options: cdirun copies after the mount"
        );
        mount.set_options(Some(kept));
    }
    Ok(())
}

fn is_bind(mount: &libcontainer::oci_spec::runtime::Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{Mount, MountBuilder};

    use super::*;

    fn mount(destination: &str, options: Option<&[&str]>) -> Mount {
        let mut mount = MountBuilder::default()
            .destination(destination)
            .typ("tmpfs")
            .source("tmpfs")
            .build()
            .unwrap();
        mount.set_options(options.map(|o| o.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        mount
    }

    #[test]
    fn drops_only_the_options_libcontainer_would_pass_to_the_kernel() {
        type Case<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a [&'a str]>);
        let cases: [Case; 4] = [
            (
                "podman --tmpfs",
                Some(&["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]),
                Some(&["rw", "rprivate", "nosuid", "nodev"]),
            ),
            (
                "notmpcopyup",
                Some(&["notmpcopyup", "size=1m"]),
                Some(&["size=1m"]),
            ),
            (
                "nothing to drop",
                Some(&["ro", "size=1m"]),
                Some(&["ro", "size=1m"]),
            ),
            ("no options", None, None),
        ];
        for (name, input, want) in cases {
            let mut spec = Spec::default();
            spec.set_mounts(Some(vec![mount("/scratch", input)]));
            let mut want_spec = Spec::default();
            want_spec.set_mounts(Some(vec![mount("/scratch", want)]));
            fix(&mut spec).unwrap();
            assert_eq!(spec, want_spec, "{name}");
            // Idempotent: a second pass changes nothing.
            fix(&mut spec).unwrap();
            assert_eq!(spec, want_spec, "{name} (again)");
        }
    }

    /// Regression: libcontainer refused `rslave` (podman's `-v DIR:/b:rslave`) and the other
    /// r-variants with "failed to prepare rootfs".
    #[test]
    fn root_propagation_gets_the_name_libcontainer_applies_the_runc_way() {
        let with = |value: Option<&str>| {
            let mut spec = Spec::default();
            if let Some(linux) = spec.linux_mut().as_mut() {
                linux.set_rootfs_propagation(value.map(str::to_owned));
            }
            spec
        };
        let cases = [
            (Some("rslave"), Some("slave")),
            (Some("rshared"), Some("shared")),
            (Some("rprivate"), Some("private")),
            (Some("runbindable"), Some("unbindable")),
            (Some("slave"), Some("slave")),
            (Some("shared"), Some("shared")),
            (Some("private"), Some("private")),
            (Some("unbindable"), Some("unbindable")),
            (Some(""), None),
            (None, None),
        ];
        for (input, want) in cases {
            let mut spec = with(input);
            fix(&mut spec).unwrap();
            assert_eq!(spec, with(want), "{input:?}");
            fix(&mut spec).unwrap();
            assert_eq!(spec, with(want), "{input:?} (again)");
        }
    }

    #[test]
    fn an_unknown_root_propagation_is_refused_by_name() {
        for value in ["rslaves", "Shared", "master", " private"] {
            let mut spec = Spec::default();
            if let Some(linux) = spec.linux_mut().as_mut() {
                linux.set_rootfs_propagation(Some(value.to_owned()));
            }
            let before = spec.clone();
            let msg = fix(&mut spec).unwrap_err().to_string();
            assert!(msg.contains("linux.rootfsPropagation"), "{msg}");
            assert!(msg.contains(&format!("{value:?}")), "{msg}");
            assert_eq!(spec, before, "{value:?}: the spec changed on error");
        }
    }

    /// Regression: `ctr run --mount type=tmpfs,dst=/x` sends no source; libcontainer refused it.
    #[test]
    fn a_filesystem_mount_without_source_gets_its_type_as_source() {
        let sourceless = |typ: &str, options: &[&str]| {
            let mut m = mount("/x", Some(options));
            m.set_typ(Some(typ.to_owned()));
            m.set_source(None);
            m
        };
        let mut with_source = sourceless("tmpfs", &["size=1m"]);
        with_source.set_source(Some("tmpfs".into()));
        let cases = [
            ("tmpfs", sourceless("tmpfs", &["size=1m"]), with_source),
            (
                "bind type",
                sourceless("bind", &["ro"]),
                sourceless("bind", &["ro"]),
            ),
            (
                "rbind option",
                sourceless("none", &["rbind"]),
                sourceless("none", &["rbind"]),
            ),
        ];
        for (name, input, want) in cases {
            let mut spec = Spec::default();
            spec.set_mounts(Some(vec![input]));
            fix(&mut spec).unwrap();
            assert_eq!(spec.mounts().as_ref().unwrap()[0], want, "{name}");
        }
    }
}
