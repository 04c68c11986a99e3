//! Rootless supplementary groups: libcontainer 0.7 refuses every `process.user.additionalGids`
//! entry in a new user namespace of a rootless runtime (setgroups is denied there, CVE-2014-8989),
//! and podman's `--userns=keep-id` lists the user's own primary gid among them. The primary gid
//! is the process's group anyway, so it is dropped from the list; any other group cannot be
//! given rootless and is refused by name, before anything is created.

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{Context, Edit, EditError};
use crate::claims::Claims;

#[derive(Debug, thiserror::Error)]
#[error(
    "process.user.additionalGids {gids:?} cannot be set rootless in a user namespace of the container's own (setgroups is denied there); drop them or run as root"
)]
pub struct GroupsError {
    gids: Vec<u32>,
}

pub struct RootlessGroups;

impl Edit for RootlessGroups {
    fn name(&self) -> &'static str {
        "rootless-groups"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        let own_userns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        if !ctx.rootless || !own_userns {
            return Ok(Claims::default());
        }
        let Some(user) = spec.process_mut().as_mut().map(|p| p.user_mut()) else {
            return Ok(Claims::default());
        };
        let Some(gids) = user.additional_gids().clone() else {
            return Ok(Claims::default());
        };
        let primary = user.gid();
        let others: Vec<u32> = gids.iter().copied().filter(|g| *g != primary).collect();
        if !others.is_empty() {
            return Err(GroupsError { gids: others }.into());
        }
        user.set_additional_gids(None);
        Ok(Claims::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use libcontainer::oci_spec::runtime::LinuxNamespaceBuilder;

    fn spec(gid: u32, gids: Option<Vec<u32>>, userns: bool) -> Spec {
        let mut spec = Spec::default();
        let user = spec.process_mut().as_mut().unwrap().user_mut();
        user.set_gid(gid);
        user.set_additional_gids(gids);
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::User);
        if userns {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::User)
                    .build()
                    .unwrap(),
            );
        }
        linux.set_namespaces(Some(namespaces));
        spec
    }

    #[test]
    fn groups_table() {
        let config = Config::default();
        let rootless = Context {
            rootless: true,
            ..Context::new("c1", &config, std::path::Path::new("/r"))
        };
        let rootful = Context::new("c1", &config, std::path::Path::new("/r"));
        // (name, context, input, want: Ok(spec) or the error's words)
        let cases: Vec<(&str, &Context, Spec, Result<Spec, &str>)> = vec![
            (
                "keep-id's own gid is dropped",
                &rootless,
                spec(1000, Some(vec![1000]), true),
                Ok(spec(1000, None, true)),
            ),
            (
                "another group is refused",
                &rootless,
                spec(1000, Some(vec![1000, 27]), true),
                Err("[27]"),
            ),
            (
                "rootful keeps them",
                &rootful,
                spec(1000, Some(vec![27]), true),
                Ok(spec(1000, Some(vec![27]), true)),
            ),
            (
                "no user namespace of its own",
                &rootless,
                spec(1000, Some(vec![27]), false),
                Ok(spec(1000, Some(vec![27]), false)),
            ),
        ];
        for (name, ctx, input, want) in cases {
            let mut got = input.clone();
            match (RootlessGroups.apply(&mut got, ctx), want) {
                (Ok(_), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(err), Err(words)) => {
                    assert!(err.to_string().contains(words), "{name}: {err}");
                    assert_eq!(got, input, "{name}");
                }
                (got, want) => panic!("{name}: {got:?} vs {want:?}"),
            }
        }
    }
}
