//! What the TOML clients' edits share: parsing with errors that name the file, walking to a
//! table (made where missing) with errors that name the key, and setting a key so that the
//! file keeps its comments and layout.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, TableLike};

use super::InstallError;

pub(super) fn parse_toml(text: &str, path: &Path) -> Result<DocumentMut, InstallError> {
    text.parse::<DocumentMut>()
        .map_err(|err| InstallError::Toml {
            path: path.to_owned(),
            cause: err.to_string().trim_end().replace('\n', " "),
        })
}

/// The table at `keys` under `root`, made (as an implicit table, so no empty header is written)
/// where missing. An inline table or a dotted-key table counts as a table.
pub(super) fn table_at<'a>(
    root: &'a mut Table,
    keys: &[&str],
    path: &Path,
) -> Result<&'a mut dyn TableLike, InstallError> {
    let mut here: &'a mut dyn TableLike = root;
    for (depth, key) in keys.iter().enumerate() {
        if here.get(key).is_none() {
            let mut table = Table::new();
            table.set_implicit(true);
            here.insert(key, Item::Table(table));
        }
        let item = here.get_mut(key).expect("inserted above");
        let found = item.type_name();
        here = item
            .as_table_like_mut()
            .ok_or_else(|| InstallError::Shape {
                path: path.to_owned(),
                key: dotted(&keys[..=depth]),
                found: toml_kind(found),
                want: "a table",
            })?;
    }
    Ok(here)
}

/// `a."b.c".d`, as TOML writes the key.
pub(super) fn dotted(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| toml_edit::Key::new(*key).display_repr().into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

pub(super) fn toml_kind(type_name: &str) -> &'static str {
    match type_name {
        "string" => "a string",
        "integer" => "an integer",
        "float" => "a float",
        "boolean" => "a boolean",
        "datetime" => "a date-time",
        "array" => "an array",
        "array of tables" => "an array of tables",
        _ => "not a table",
    }
}

/// Sets `key` to `value`. A key already there keeps its place, comments and indentation (and
/// its value's formatting when the value is the same); a new key is indented as the table's
/// first key is.
pub(super) fn set(table: &mut dyn TableLike, key: &str, value: toml_edit::Value) {
    if let Some(old) = table.get_mut(key) {
        let same = old
            .as_value()
            .is_some_and(|old| old.to_string().trim() == value.to_string().trim());
        if !same {
            let decor = old.as_value().map(|old| old.decor().clone());
            let mut value = value;
            if let Some(decor) = decor {
                *value.decor_mut() = decor;
            }
            *old = Item::Value(value);
        }
        return;
    }
    let indent = table
        .iter()
        .next()
        .map(|(first, _)| first.to_owned())
        .and_then(|first| {
            let (key, _) = table.get_key_value(&first)?;
            key.leaf_decor().prefix()?.as_str().map(str::to_owned)
        });
    table.insert(key, Item::Value(value));
    if let (Some(indent), Some((mut key, _))) = (indent, table.get_key_value_mut(key)) {
        key.leaf_decor_mut().set_prefix(indent);
    }
}
