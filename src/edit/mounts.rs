//! Mounts that runc takes and libcontainer refuses with "failed to prepare rootfs":
//!
//! - Options runc and crun act on themselves (`tmpcopyup`): libcontainer hands them to the kernel
//!   as mount data. podman sends `tmpcopyup` on every `--tmpfs` and on the tmpfs mounts of
//!   `--read-only` containers. It asks for the image's files at the mount point to be copied into
//!   the new tmpfs; libcontainer cannot do that, so the option is dropped here and cdirun copies
//!   after libcontainer mounted the tmpfs (see `crate::finish`, which reads the option from the
//!   client's config).
//! - A filesystem mount without `source` (`ctr run --mount type=tmpfs,dst=/x`): the source of a
//!   tmpfs, proc or similar is only a name, so it gets the type's name. A bind mount without a
//!   source stays an error.

use libcontainer::oci_spec::runtime::Spec;

use super::{Context, Edit, EditError};
use crate::claims::Claims;

/// Options removed from every mount; `crate::finish` acts on them instead.
pub const UNSUPPORTED_OPTIONS: [&str; 2] = ["tmpcopyup", "notmpcopyup"];

pub struct MountOptions;

impl Edit for MountOptions {
    fn name(&self) -> &'static str {
        "mount-options"
    }

    fn apply(&self, spec: &mut Spec, _ctx: &Context) -> Result<Claims, EditError> {
        let Some(mounts) = spec.mounts_mut() else {
            return Ok(Claims::default());
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
        Ok(Claims::default())
    }
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
    use crate::config::Config;

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
        let config = Config::default();
        let ctx = Context::new("c1", &config, std::path::Path::new("/run/cdirun"));
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
            MountOptions.apply(&mut spec, &ctx).unwrap();
            assert_eq!(spec, want_spec, "{name}");
            // Idempotent: a second pass changes nothing.
            MountOptions.apply(&mut spec, &ctx).unwrap();
            assert_eq!(spec, want_spec, "{name} (again)");
        }
    }

    /// Regression: `ctr run --mount type=tmpfs,dst=/x` sends no source; libcontainer refused it.
    #[test]
    fn a_filesystem_mount_without_source_gets_its_type_as_source() {
        let config = Config::default();
        let ctx = Context::new("c1", &config, std::path::Path::new("/run/cdirun"));
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
            MountOptions.apply(&mut spec, &ctx).unwrap();
            assert_eq!(spec.mounts().as_ref().unwrap()[0], want, "{name}");
        }
    }
}
