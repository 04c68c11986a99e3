//! The NVIDIA hook edit: Docker's `--gpus` adds the prestart hook `nvidia-container-runtime-hook
//! prestart` (and sets `NVIDIA_VISIBLE_DEVICES`). cdirun serves that variable through CDI, so the
//! hook is dropped before anything else runs: the devices come from the CDI specs, not from
//! libnvidia-container on top of them (or a stand-in that only says to use cdirun).
#![allow(deprecated)] // `prestart` is deprecated in the runtime spec but still run.

use std::path::Path;

use libcontainer::oci_spec::runtime::{Hook, Spec};

use super::{Context, Edit, EditError};
use crate::claims::Claims;

/// The names Docker's NVIDIA device driver and NVIDIA's toolkit give the legacy hook.
pub const LEGACY_HOOKS: [&str; 2] = ["nvidia-container-runtime-hook", "nvidia-container-toolkit"];

pub struct NvidiaHook;

/// Whether `hook` is NVIDIA's legacy prestart hook: its program (path or `argv[0]`) has one of
/// [`LEGACY_HOOKS`]' names and it runs the `prestart` subcommand.
pub fn is_legacy(hook: &Hook) -> bool {
    let named = |text: &str| {
        Path::new(text)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| LEGACY_HOOKS.contains(&n))
    };
    let args = hook.args().clone().unwrap_or_default();
    (named(&hook.path().to_string_lossy()) || args.first().is_some_and(|a| named(a)))
        && args.iter().skip(1).any(|a| a == "prestart")
}

impl Edit for NvidiaHook {
    fn name(&self) -> &'static str {
        "nvidia-hook"
    }

    fn apply(&self, spec: &mut Spec, _ctx: &Context) -> Result<Claims, EditError> {
        let Some(mut hooks) = spec.hooks().clone() else {
            return Ok(Claims::default());
        };
        let Some(prestart) = hooks.prestart().clone() else {
            return Ok(Claims::default());
        };
        let kept: Vec<Hook> = prestart.iter().filter(|h| !is_legacy(h)).cloned().collect();
        if kept.len() == prestart.len() {
            return Ok(Claims::default());
        }
        tracing::debug!(
            "dropping NVIDIA's legacy prestart hook: NVIDIA_VISIBLE_DEVICES goes through CDI"
        );
        hooks.set_prestart(if kept.is_empty() { None } else { Some(kept) });
        spec.set_hooks(Some(hooks));
        Ok(Claims::default())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;

    fn spec(hooks: Value) -> Spec {
        let mut value = json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"]}});
        if !hooks.is_null() {
            value["hooks"] = hooks;
        }
        serde_json::from_value(value).unwrap()
    }

    /// name, hooks in, hooks out.
    #[test]
    fn the_legacy_hook_is_dropped_and_nothing_else() {
        let docker = json!({"path": "/usr/bin/nvidia-container-runtime-hook",
                            "args": ["nvidia-container-runtime-hook", "prestart"]});
        let setkey = json!({"path": "/proc/123/exe", "args": ["libnetwork-setkey", "-exec-root=/run/docker", "abc", "def"]});
        let cases = [
            (
                "docker --gpus alone",
                json!({"prestart": [docker]}),
                json!({}),
            ),
            (
                "docker --gpus with -p: libnetwork's hook stays, in place",
                json!({"prestart": [setkey, docker], "poststop": [{"path": "/p"}]}),
                json!({"prestart": [setkey], "poststop": [{"path": "/p"}]}),
            ),
            (
                "the toolkit's name through argv[0]",
                json!({"prestart": [{"path": "/opt/x", "args": ["nvidia-container-toolkit", "-debug", "prestart"]}]}),
                json!({}),
            ),
            (
                "not prestart: another subcommand is kept",
                json!({"prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["x", "poststart"]}]}),
                json!({"prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["x", "poststart"]}]}),
            ),
            (
                "a createContainer hook of the same name is not Docker's",
                json!({"createContainer": [docker]}),
                json!({"createContainer": [docker]}),
            ),
            ("no hooks", Value::Null, Value::Null),
        ];
        let config = Config::default();
        let ctx = Context::new("c", &config, Path::new("/run/cdirun"));
        for (name, input, want) in cases {
            let mut got = spec(input);
            NvidiaHook.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(want.clone()), "{name}");
            NvidiaHook.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(want), "{name}: twice");
        }
    }
}
