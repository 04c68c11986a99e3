//! Docker's daemon.json: the runtime entry under `runtimes`, every other key kept.

use std::path::Path;

use serde_json::Value;

use super::{InstallError, Runtime, binary_text};

/// daemon.json: `runtimes.<name>.path`; other keys of the entry (runtimeArgs) stay. serde_json
/// writes the keys sorted, as `nvidia-ctk runtime configure` does.
pub(super) fn docker(text: &str, runtime: &Runtime, path: &Path) -> Result<String, InstallError> {
    let shape = |key: &str, found: &Value, want| InstallError::Shape {
        path: path.to_owned(),
        key: key.to_owned(),
        found: json_kind(found),
        want,
    };
    let mut root = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(text).map_err(|err| InstallError::Json {
            path: path.to_owned(),
            line: err.line(),
            column: err.column(),
            cause: strip_position(&err.to_string()),
        })?
    };
    let Value::Object(top) = &mut root else {
        return Err(shape("the top level", &root, "an object"));
    };
    let runtimes = top
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Default::default()));
    let found = runtimes.clone();
    let Value::Object(runtimes) = runtimes else {
        return Err(shape("\"runtimes\"", &found, "an object"));
    };
    let entry = runtimes
        .entry(runtime.name.clone())
        .or_insert_with(|| Value::Object(Default::default()));
    let found = entry.clone();
    let Value::Object(entry) = entry else {
        return Err(shape(
            &format!("\"runtimes\".\"{}\"", runtime.name),
            &found,
            "an object",
        ));
    };
    entry.insert("path".to_owned(), Value::String(binary_text(runtime)));
    let mut out = serde_json::to_string_pretty(&root).expect("a JSON value serializes");
    out.push('\n');
    Ok(out)
}

/// serde_json's message ends with " at line L column C", which the error already says.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
