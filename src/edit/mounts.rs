//! Mount options that runc and crun act on themselves and libcontainer does not know: left in,
//! libcontainer hands them to the kernel as mount data and the create fails ("failed to prepare
//! rootfs"). podman sends `tmpcopyup` on every `--tmpfs` and on the tmpfs mounts of
//! `--read-only` containers.
//!
//! `tmpcopyup` asks for the image's files at the mount point to be copied into the new tmpfs.
//! libcontainer cannot do that, so the option is dropped: the tmpfs starts empty, as with
//! `notmpcopyup`.

use libcontainer::oci_spec::runtime::Spec;

use super::{Context, Edit, EditError};
use crate::claims::Claims;

/// Options removed from every mount, with what the runtime does instead.
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
                "dropping tmpcopyup: the tmpfs starts empty"
            );
            mount.set_options(Some(kept));
        }
        Ok(Claims::default())
    }
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
        let ctx = Context {
            container_id: "c1",
            systemd_cgroup: false,
            config: &config,
        };
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
}
