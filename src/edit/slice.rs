//! Cgroup placement: gives every container a cgroupsPath cdirun chose or accepted.

use std::path::PathBuf;

use libcontainer::oci_spec::runtime::Spec;

use super::{Context, Edit, EditError};
use crate::claims::Claims;

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("config.json has no \"linux\" section; cdirun runs Linux containers only")]
    NotLinux,
}

/// Fills in a cgroupsPath when the client gave none, as runc does (`/<id>` for cgroupfs,
/// `system.slice:cdirun:<id>` for systemd) instead of libcontainer's youki-branded default.
pub struct Placement;

impl Edit for Placement {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        let linux = spec.linux_mut().as_mut().ok_or(SliceError::NotLinux)?;
        if linux.cgroups_path().is_none() {
            linux.set_cgroups_path(Some(default_cgroups_path(ctx)));
        }
        Ok(Claims::default())
    }
}

fn default_cgroups_path(ctx: &Context) -> PathBuf {
    if ctx.systemd_cgroup {
        format!("system.slice:cdirun:{}", ctx.container_id).into()
    } else {
        format!("/{}", ctx.container_id).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ctx(systemd_cgroup: bool) -> Context<'static> {
        static CONFIG: std::sync::LazyLock<crate::config::Config> =
            std::sync::LazyLock::new(crate::config::Config::default);
        Context {
            container_id: "c1",
            systemd_cgroup,
            config: &CONFIG,
        }
    }

    fn with_path(path: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        spec.linux_mut()
            .as_mut()
            .unwrap()
            .set_cgroups_path(path.map(PathBuf::from));
        spec
    }

    #[test]
    fn placement_table() {
        let cases = [
            ("absent, cgroupfs", None, false, Some("/c1")),
            (
                "absent, systemd",
                None,
                true,
                Some("system.slice:cdirun:c1"),
            ),
            ("client path kept", Some("/ns/c1"), false, Some("/ns/c1")),
        ];
        for (name, input, systemd, want) in cases {
            let mut spec = with_path(input);
            Placement.apply(&mut spec, &ctx(systemd)).unwrap();
            assert_eq!(spec, with_path(want), "{name}");
            // idempotent
            Placement.apply(&mut spec, &ctx(systemd)).unwrap();
            assert_eq!(spec, with_path(want), "{name} (twice)");
        }
    }

    #[test]
    fn non_linux_spec_is_refused_and_untouched() {
        let mut spec = Spec::default();
        spec.set_linux(None);
        let before = spec.clone();
        assert!(Placement.apply(&mut spec, &ctx(false)).is_err());
        assert_eq!(spec, before);
    }
}
