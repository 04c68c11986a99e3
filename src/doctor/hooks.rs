//! The hooks.d check: the definitions in effect and what `[hooks] on-error` makes of a bad file.

use super::{Check, fail, ok, warn};
use crate::config::{Config, OnError};

/// hooks.d dirs and the verdict on their files.
pub(super) fn hooks(config: &Config) -> Vec<Check> {
    let (definitions, problems) = crate::hooksd::load(&config.hooks.dirs);
    let dirs: Vec<String> = config
        .hooks
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let mut checks = vec![ok(
        "hooks",
        format!(
            "{} hooks.d definitions in effect from {}",
            definitions.len(),
            dirs.join(", ")
        ),
    )];
    for problem in problems {
        let message = problem.to_string();
        checks.push(match config.hooks.on_error {
            OnError::Fail => fail("hooks", message, "every create fails until the file is fixed or removed ([hooks] on-error = \"fail\")"),
            OnError::Skip => warn("hooks", message, "the file is skipped ([hooks] on-error = \"skip\"); fix or remove it"),
        });
    }
    checks
}
