//! oci-hooks(5) hook definitions: parsing the 1.0.0 and legacy 0.1.0 JSON schemas, validating
//! them, reading the hooks.d dirs (ordering and masking) and matching a definition to a spec.
//!
//! Semantics follow the reference implementation (containers/common `pkg/hooks`):
//! - files are `*.json` directly in each dir; a same-named valid file in a later dir masks the
//!   earlier, a broken one masks nothing; the survivors are applied in the order of their
//!   lower-cased file names;
//! - a file without `version` (or with `0.1.0`) is the legacy schema, whose conditions match
//!   any-of; 1.0.0 conditions are ANDed;
//! - annotation keys and values, and commands, are unanchored regular expressions; `commands`
//!   is matched against `process.args[0]` exactly as written (a full path stays a full path);
//! - `hasBindMounts` matches only when it is `true` and the spec has a bind mount.
//!
//! cdirun is stricter than the reference in two ways, both so a typo never silently disables a
//! hook: unknown fields are errors, and a 1.0.0 `when` must set at least one condition (the
//! man page requires it; an empty `when` could never match).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{Hook as OciHook, Spec};
use regex::Regex;
use serde::Deserialize;

pub use crate::engine::hook_stage::{HOOK_STAGES, Stage};

/// The current schema version.
pub const VERSION: &str = "1.0.0";
/// The legacy schema version; a file without `version` is this one.
pub const LEGACY_VERSION: &str = "0.1.0";
/// Only files with this suffix are definitions; anything else in a hooks dir is ignored.
pub const SUFFIX: &str = ".json";

#[derive(Debug, thiserror::Error)]
pub enum HooksdError {
    #[error("cannot read hooks dir {dir}: {cause}")]
    Dir { dir: PathBuf, cause: std::io::Error },
    #[error("cannot read hook definition {file}: {cause}")]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid hook definition {file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error(
        "invalid hook definition {file}: unsupported version {version:?} (use {VERSION:?}, or {LEGACY_VERSION:?} / no version for the legacy schema)"
    )]
    Version { file: PathBuf, version: String },
    #[error("invalid hook definition {file}: unknown stage {stage:?} in {field}; use one of {}", HOOK_STAGES.join(", "))]
    Stage {
        file: PathBuf,
        field: &'static str,
        stage: String,
    },
    #[error("invalid hook definition {file}: {field}: {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error(
        "hook definition {file} has a commands condition, but the spec's process.args is empty"
    )]
    NoCommand { file: PathBuf },
}

/// A compiled regular expression that remembers its source (for comparison and messages).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Pattern {
    fn compile(source: &str, file: &Path, field: String) -> Result<Self, HooksdError> {
        match Regex::new(source) {
            Ok(regex) => Ok(Self {
                source: source.to_owned(),
                regex,
            }),
            Err(err) => Err(HooksdError::Field {
                file: file.to_owned(),
                field,
                message: format!(
                    "invalid regular expression {source:?}: {}",
                    err.to_string().replace('\n', " ")
                ),
            }),
        }
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// Conditions under which a hook is injected.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct When {
    pub always: Option<bool>,
    /// (key pattern, value pattern) pairs; each must match one annotation.
    pub annotations: Vec<(Pattern, Pattern)>,
    /// Patterns for `process.args[0]`; one match is enough.
    pub commands: Vec<Pattern>,
    pub has_bind_mounts: Option<bool>,
    /// Any-of matching (legacy 0.1.0 definitions); otherwise all-of.
    pub any_of: bool,
}

/// What a definition is matched against, taken from the spec once.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub annotations: Option<&'a HashMap<String, String>>,
    /// `None` when the spec has no process; `Some(None)` when process.args is empty.
    pub command: Option<Option<&'a str>>,
    pub has_bind_mounts: bool,
}

impl<'a> Subject<'a> {
    pub fn of(spec: &'a Spec) -> Self {
        Self {
            annotations: spec.annotations().as_ref(),
            command: spec.process().as_ref().map(|p| {
                p.args()
                    .as_ref()
                    .and_then(|a| a.first())
                    .map(String::as_str)
            }),
            has_bind_mounts: has_bind_mounts(spec),
        }
    }
}

/// Whether the spec bind-mounts something from the host: a mount of type `bind`, or one whose
/// options say `bind` or `rbind`. (A runtime sees only the spec, so mounts a client adds itself,
/// such as podman's /etc/hosts, count too.)
pub fn has_bind_mounts(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    })
}

impl When {
    /// Whether the conditions hold for `subject`; `file` only names the definition in errors.
    pub fn matches(&self, subject: &Subject, file: &Path) -> Result<bool, HooksdError> {
        // Each condition that is set either matches or not; all-of needs every one, any-of one.
        let mut results = Vec::with_capacity(4);
        if let Some(always) = self.always {
            results.push(always);
        }
        if let Some(wanted) = self.has_bind_mounts {
            results.push(wanted && subject.has_bind_mounts);
        }
        for (key, value) in &self.annotations {
            let found = subject
                .annotations
                .into_iter()
                .flatten()
                .any(|(k, v)| key.is_match(k) && value.is_match(v));
            results.push(found);
        }
        if !self.commands.is_empty() {
            if let Some(command) = subject.command {
                let command = command.ok_or_else(|| HooksdError::NoCommand {
                    file: file.to_owned(),
                })?;
                results.push(self.commands.iter().any(|p| p.is_match(command)));
            } else {
                // No process (a spec for a container that is never started): the reference
                // skips the condition.
            }
        }
        Ok(if self.any_of {
            results.iter().any(|r| *r)
        } else {
            !results.is_empty() && results.iter().all(|r| *r)
        })
    }
}

/// One valid hook definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The file it was read from (named in errors and logs).
    pub file: PathBuf,
    /// The schema version it was written in.
    pub version: &'static str,
    pub hook: OciHook,
    pub when: When,
    pub stages: Vec<Stage>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurrent {
    #[allow(dead_code)]
    version: String,
    hook: RawHook,
    when: RawWhen,
    stages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    path: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    timeout: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWhen {
    #[serde(default)]
    always: Option<bool>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    commands: Option<Vec<String>>,
    #[serde(default)]
    has_bind_mounts: Option<bool>,
}

/// The legacy schema, with its singular synonyms.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLegacy {
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<String>,
    hook: String,
    #[serde(default)]
    arguments: Option<Vec<String>>,
    #[serde(default)]
    stages: Option<Vec<String>>,
    #[serde(default)]
    stage: Option<Vec<String>>,
    #[serde(default)]
    cmds: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    annotations: Option<Vec<String>>,
    #[serde(default)]
    annotation: Option<Vec<String>>,
    #[serde(default)]
    hasbindmounts: Option<bool>,
}

fn parse_error(file: &Path, err: serde_json::Error) -> HooksdError {
    HooksdError::Parse {
        file: file.to_owned(),
        message: err.to_string(),
    }
}

fn field(file: &Path, field: impl fmt::Display, message: impl fmt::Display) -> HooksdError {
    HooksdError::Field {
        file: file.to_owned(),
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// One of two synonyms (legacy `stages`/`stage` and friends); setting both is an error.
fn synonym<T>(
    file: &Path,
    (name, value): (&'static str, Option<T>),
    (alias, alias_value): (&'static str, Option<T>),
) -> Result<Option<T>, HooksdError> {
    match (value, alias_value) {
        (Some(_), Some(_)) => Err(field(
            file,
            name,
            format!("set either {name:?} or its synonym {alias:?}, not both"),
        )),
        (value, alias_value) => Ok(value.or(alias_value)),
    }
}

impl Definition {
    /// Parses and validates definition text; `file` names the definition in errors.
    ///
    /// `path_exists` says whether a hook executable exists (the reference checks `hook.path`
    /// at load, so a definition for an uninstalled hook fails early and names its file).
    pub fn parse(
        text: &str,
        file: &Path,
        path_exists: &dyn Fn(&Path) -> bool,
    ) -> Result<Self, HooksdError> {
        let version: VersionOnly = serde_json::from_str(text).map_err(|e| parse_error(file, e))?;
        let definition = match version.version {
            None => Self::legacy(text, file)?,
            Some(serde_json::Value::String(v)) if v == LEGACY_VERSION => Self::legacy(text, file)?,
            Some(serde_json::Value::String(v)) if v == VERSION => Self::current(text, file)?,
            Some(serde_json::Value::String(v)) => {
                return Err(HooksdError::Version {
                    file: file.to_owned(),
                    version: v,
                });
            }
            Some(other) => {
                return Err(HooksdError::Version {
                    file: file.to_owned(),
                    version: other.to_string(),
                });
            }
        };
        definition.validate(path_exists)?;
        Ok(definition)
    }

    fn current(text: &str, file: &Path) -> Result<Self, HooksdError> {
        let raw: RawCurrent = serde_json::from_str(text).map_err(|e| parse_error(file, e))?;
        let mut hook = OciHook::default();
        hook.set_path(PathBuf::from(&raw.hook.path))
            .set_args(raw.hook.args)
            .set_env(raw.hook.env)
            .set_timeout(raw.hook.timeout);
        let w = raw.when;
        if w.always.is_none()
            && w.annotations.is_none()
            && w.commands.is_none()
            && w.has_bind_mounts.is_none()
        {
            return Err(field(
                file,
                "when",
                "set at least one of always, annotations, commands, hasBindMounts",
            ));
        }
        let mut annotations = Vec::new();
        for (key, value) in w.annotations.iter().flatten() {
            annotations.push((
                Pattern::compile(key, file, format!("when.annotations key {key:?}"))?,
                Pattern::compile(value, file, format!("when.annotations[{key:?}]"))?,
            ));
        }
        let commands = compile_all(w.commands.iter().flatten(), file, "when.commands")?;
        Ok(Self {
            file: file.to_owned(),
            version: VERSION,
            hook,
            when: When {
                always: w.always,
                annotations,
                commands,
                has_bind_mounts: w.has_bind_mounts,
                any_of: false,
            },
            stages: stages(&raw.stages, file, "stages")?,
        })
    }

    fn legacy(text: &str, file: &Path) -> Result<Self, HooksdError> {
        let raw: RawLegacy = serde_json::from_str(text).map_err(|e| parse_error(file, e))?;
        let (stage_field, raw_stages) =
            match synonym(file, ("stages", raw.stages), ("stage", raw.stage))? {
                Some(s) => ("stages", s),
                None => return Err(field(file, "stages", "missing required field")),
            };
        let cmds = synonym(file, ("cmds", raw.cmds), ("cmd", raw.cmd))?;
        let annotations = synonym(
            file,
            ("annotations", raw.annotations),
            ("annotation", raw.annotation),
        )?;
        let mut hook = OciHook::default();
        hook.set_path(PathBuf::from(&raw.hook));
        // The legacy `arguments` come after the path, which becomes args[0].
        if let Some(arguments) = raw.arguments {
            let mut args = vec![raw.hook.clone()];
            args.extend(arguments);
            hook.set_args(Some(args));
        }
        // Legacy annotation patterns match values of any key; they are one alternation.
        let annotations = match annotations {
            Some(values) if !values.is_empty() => {
                for (i, value) in values.iter().enumerate() {
                    Pattern::compile(value, file, format!("annotations[{i}]"))?;
                }
                let any_key = Pattern::compile(".*", file, "annotations".into())?;
                let joined = values.join("|");
                vec![(
                    any_key,
                    Pattern::compile(&joined, file, "annotations".into())?,
                )]
            }
            _ => Vec::new(),
        };
        Ok(Self {
            file: file.to_owned(),
            version: LEGACY_VERSION,
            hook,
            when: When {
                always: None,
                annotations,
                commands: compile_all(cmds.iter().flatten(), file, "cmds")?,
                has_bind_mounts: raw.hasbindmounts,
                any_of: true,
            },
            stages: stages(&raw_stages, file, stage_field)?,
        })
    }

    fn validate(&self, path_exists: &dyn Fn(&Path) -> bool) -> Result<(), HooksdError> {
        let file = &self.file;
        let path = self.hook.path();
        if path.as_os_str().is_empty() {
            return Err(field(file, "hook.path", "missing or empty"));
        }
        if !path.is_absolute() {
            return Err(field(
                file,
                "hook.path",
                format!("{} is not an absolute path", path.display()),
            ));
        }
        if !path_exists(path) {
            return Err(field(
                file,
                "hook.path",
                format!("{} does not exist", path.display()),
            ));
        }
        for (i, entry) in self.hook.env().iter().flatten().enumerate() {
            if !entry.contains('=') {
                return Err(field(
                    file,
                    format!("hook.env[{i}]"),
                    format!("{entry:?} is not KEY=VALUE"),
                ));
            }
        }
        if let Some(timeout) = self.hook.timeout() {
            if timeout <= 0 {
                return Err(field(
                    file,
                    "hook.timeout",
                    format!("{timeout} is not a positive number of seconds"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this definition applies to `subject`.
    pub fn matches(&self, subject: &Subject) -> Result<bool, HooksdError> {
        self.when.matches(subject, &self.file)
    }
}

fn compile_all<'a>(
    sources: impl Iterator<Item = &'a String>,
    file: &Path,
    name: &str,
) -> Result<Vec<Pattern>, HooksdError> {
    sources
        .enumerate()
        .map(|(i, s)| Pattern::compile(s, file, format!("{name}[{i}]")))
        .collect()
}

fn stages(names: &[String], file: &Path, name: &'static str) -> Result<Vec<Stage>, HooksdError> {
    if names.is_empty() {
        return Err(field(file, name, "names no stage"));
    }
    let mut stages = Vec::with_capacity(names.len());
    for stage in names {
        let parsed = Stage::parse(stage).ok_or_else(|| HooksdError::Stage {
            file: file.to_owned(),
            field: name,
            stage: stage.clone(),
        })?;
        if !stages.contains(&parsed) {
            stages.push(parsed);
        }
    }
    Ok(stages)
}

/// A definition file that could not be used, and the same-named file of an earlier dir that
/// stays in effect instead (a broken file masks nothing, as in the reference, so an admin's
/// half-written override never silently removes a packaged hook).
#[derive(Debug)]
pub struct Problem {
    pub error: HooksdError,
    pub in_effect: Option<PathBuf>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        match &self.in_effect {
            Some(file) => write!(f, "; {} stays in effect", file.display()),
            None => Ok(()),
        }
    }
}

impl From<HooksdError> for Problem {
    fn from(error: HooksdError) -> Self {
        Self {
            error,
            in_effect: None,
        }
    }
}

/// The `*.json` files directly in `dir`, by file name. A missing dir is no error (the defaults
/// name dirs that packages may never create); an unreadable one is.
fn dir_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<(String, PathBuf)> {
    let unreadable = |cause| -> Problem {
        HooksdError::Dir {
            dir: dir.to_owned(),
            cause,
        }
        .into()
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(cause) => {
            problems.push(unreadable(cause));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(cause) => {
                problems.push(unreadable(cause));
                continue;
            }
        };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(SUFFIX) {
            files.push((name, entry.path()));
        }
    }
    files
}

/// Reads and parses one definition file.
fn read(file: &Path, path_exists: &dyn Fn(&Path) -> bool) -> Result<Definition, HooksdError> {
    let text = std::fs::read_to_string(file).map_err(|cause| HooksdError::Read {
        file: file.to_owned(),
        cause,
    })?;
    Definition::parse(&text, file, path_exists)
}

/// Orders by lower-cased file name, then name (so the order is total).
fn by_lowercased_name<T>(map: BTreeMap<String, T>) -> impl Iterator<Item = T> {
    let mut ordered: Vec<(String, T)> = map.into_iter().collect();
    ordered.sort_by(|(a, _), (b, _)| a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b)));
    ordered.into_iter().map(|(_, value)| value)
}

/// Every definition in `dirs`, in application order, and the problems met on the way (each
/// naming its dir or file). A broken file does not stop the others from loading.
///
/// Masking follows the reference: a file name is registered only when its file parses, so a
/// same-named valid file in a later dir replaces the earlier definition, while a broken one
/// leaves it in effect (its problem says which file that is). A broken file that a valid file
/// in a later dir replaces is no problem: the override is what the admin meant.
pub fn load(dirs: &[PathBuf]) -> (Vec<Definition>, Vec<Problem>) {
    load_with(dirs, &|p| p.exists())
}

fn load_with(
    dirs: &[PathBuf],
    path_exists: &dyn Fn(&Path) -> bool,
) -> (Vec<Definition>, Vec<Problem>) {
    let mut registered: BTreeMap<String, Definition> = BTreeMap::new();
    let mut broken: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    let mut problems = Vec::new();
    for dir in dirs {
        for (name, file) in dir_files(dir, &mut problems) {
            match read(&file, path_exists) {
                Ok(definition) => {
                    broken.remove(&name);
                    registered.insert(name, definition);
                }
                Err(error) => {
                    let in_effect = registered.get(&name).map(|d| d.file.clone());
                    broken
                        .entry(name)
                        .or_default()
                        .push(Problem { error, in_effect });
                }
            }
        }
    }
    problems.extend(by_lowercased_name(broken).flatten());
    (by_lowercased_name(registered).collect(), problems)
}

#[cfg(test)]
mod tests;
