//! The hooks edit: injects the oci-hooks(5) definitions of the `[hooks] dirs` that match the
//! container into the spec's hook lists, in file-name order.
//!
//! A broken definition fails the create (`on-error = "fail"`) or is skipped with a warning
//! (`"skip"`); either way the message names the file and the field, and a skip warning names the
//! earlier same-named file that stays in effect, if any. Appending is add-if-absent,
//! so applying twice (or over a config a client already injected the same hooks into) gives the
//! same config.

use libcontainer::oci_spec::runtime::Spec;

use super::{Context, Edit, EditError};
use crate::claims::Claims;
use crate::config::OnError;
use crate::hooksd::{self, Definition, HooksdError, Subject};

#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    #[error(
        "broken hook definitions ([hooks] on-error = \"fail\"; fix or remove them, or set on-error = \"skip\"): {}",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Broken(Vec<HooksdError>),
    #[error(transparent)]
    Match(HooksdError),
}

/// The hooks.d edit; skipped (no dir is read) when `[hooks] dirs` is empty.
pub struct HooksD;

impl Edit for HooksD {
    fn name(&self) -> &'static str {
        "hooks"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        let config = &ctx.config.hooks;
        if config.dirs.is_empty() {
            return Ok(Claims::default());
        }
        let (definitions, problems) = hooksd::load(&config.dirs);
        if !problems.is_empty() {
            match config.on_error {
                OnError::Fail => {
                    let errors = problems.into_iter().map(|p| p.error).collect();
                    return Err(HooksError::Broken(errors).into());
                }
                OnError::Skip => {
                    for problem in &problems {
                        tracing::warn!("skipping: {problem}");
                    }
                }
            }
        }
        inject(spec, &definitions)?;
        Ok(Claims::default())
    }
}

/// Adds the hooks of every matching definition, in order, to `spec`. On error `spec` is
/// untouched. Returns the files whose definitions matched.
pub fn inject<'d>(
    spec: &mut Spec,
    definitions: &'d [Definition],
) -> Result<Vec<&'d Definition>, HooksError> {
    let subject = Subject::of(spec);
    let mut matched = Vec::new();
    for definition in definitions {
        if definition.matches(&subject).map_err(HooksError::Match)? {
            tracing::debug!(file = %definition.file.display(), "hook definition matches");
            matched.push(definition);
        }
    }
    if matched.is_empty() {
        return Ok(matched);
    }
    let mut hooks = spec.hooks().clone().unwrap_or_default();
    let mut changed = false;
    for definition in &matched {
        for stage in &definition.stages {
            changed |= stage.add(&mut hooks, &definition.hook);
        }
    }
    if changed {
        spec.set_hooks(Some(hooks));
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;

    fn spec(value: Value) -> Spec {
        serde_json::from_value(value).unwrap()
    }

    fn base() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["/bin/app", "--serve"]},
            "annotations": {"io.example/gpu": "yes"},
        })
    }

    fn definition(name: &str, text: Value) -> Definition {
        Definition::parse(&text.to_string(), Path::new(name), &|_| true).unwrap()
    }

    #[test]
    fn matching_definitions_are_appended_in_order_and_twice_is_once() {
        let defs = vec![
            definition(
                "01-a.json",
                json!({"version": "1.0.0", "hook": {"path": "/a", "args": ["a", "x"]},
                       "when": {"annotations": {"^io\\.example/gpu$": "^yes$"}},
                       "stages": ["prestart", "createContainer"]}),
            ),
            definition(
                "02-b.json",
                json!({"version": "1.0.0", "hook": {"path": "/b"},
                       "when": {"commands": ["^/bin/other$"]}, "stages": ["prestart"]}),
            ),
            definition(
                "03-c.json",
                json!({"hook": "/c", "cmds": ["app$"], "stages": ["poststop"]}),
            ),
        ];
        let mut s = base();
        s["hooks"] = json!({"prestart": [{"path": "/user"}]});
        let mut got = spec(s);
        inject(&mut got, &defs).unwrap();
        let mut want = base();
        want["hooks"] = json!({
            "prestart": [{"path": "/user"}, {"path": "/a", "args": ["a", "x"]}],
            "createContainer": [{"path": "/a", "args": ["a", "x"]}],
            "poststop": [{"path": "/c"}],
        });
        assert_eq!(got, spec(want));
        let once = got.clone();
        inject(&mut got, &defs).unwrap();
        assert_eq!(got, once, "applying twice must give the same config");
    }

    #[test]
    fn nothing_matching_leaves_the_spec_alone() {
        let defs = vec![definition(
            "01-a.json",
            json!({"version": "1.0.0", "hook": {"path": "/a"},
                   "when": {"always": false}, "stages": ["prestart"]}),
        )];
        let mut got = spec(base());
        assert!(inject(&mut got, &defs).unwrap().is_empty());
        assert_eq!(got, spec(base()));
    }

    fn ctx_config(dirs: Vec<PathBuf>, on_error: OnError) -> Config {
        let mut config = Config::default();
        config.hooks.dirs = dirs;
        config.hooks.on_error = on_error;
        config
    }

    #[test]
    fn broken_file_fails_or_is_skipped_per_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("01-bad.json"),
            r#"{"version": "1.0.0", "hook": {"path": "/bin/sh"}, "when": {"always": true}, "stages": ["preStart"]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("02-good.json"),
            r#"{"version": "1.0.0", "hook": {"path": "/bin/sh"}, "when": {"always": true}, "stages": ["poststop"]}"#,
        )
        .unwrap();

        let config = ctx_config(vec![dir.path().into()], OnError::Fail);
        let ctx = Context::new("c", &config, std::path::Path::new("/run/cdirun"));
        let mut got = spec(base());
        let err = HooksD.apply(&mut got, &ctx).unwrap_err().to_string();
        assert!(err.contains("\"preStart\""), "{err}");
        assert!(err.contains("01-bad.json"), "{err}");
        assert_eq!(got, spec(base()), "a failed edit leaves the spec alone");

        let config = ctx_config(vec![dir.path().into()], OnError::Skip);
        let ctx = Context {
            config: &config,
            ..ctx
        };
        HooksD.apply(&mut got, &ctx).unwrap();
        let mut want = base();
        want["hooks"] = json!({"poststop": [{"path": "/bin/sh"}]});
        assert_eq!(got, spec(want));
    }

    #[test]
    fn no_dirs_reads_nothing() {
        let config = ctx_config(Vec::new(), OnError::Fail);
        let ctx = Context::new("c", &config, std::path::Path::new("/run/cdirun"));
        let mut got = spec(base());
        HooksD.apply(&mut got, &ctx).unwrap();
        assert_eq!(got, spec(base()));
    }
}
