//! The config file the package installs as /etc/cdirun/config.toml: as shipped (all commented
//! out) and with every documented key uncommented, it must mean exactly the embedded defaults.

use cdirun::config::Config;

const SHIPPED: &str = include_str!("../packaging/config.toml");

/// The shipped text with each `#key = value` and `#[table]` line (no space after `#`) made live.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Regression: a bare `[slices.owners]` header in the shipped file parsed as an empty owner
/// table, which would have refused every container on a host with the package installed.
#[test]
fn shipped_config_as_is_is_the_embedded_defaults() {
    let config = Config::parse(SHIPPED, "packaging/config.toml".as_ref()).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn shipped_config_documents_every_default_with_its_value() {
    let live = uncommented(SHIPPED);
    let config = Config::parse(&live, "packaging/config.toml".as_ref())
        .unwrap_or_else(|err| panic!("{err}\n{live}"));
    assert_eq!(config, Config::default());
    // Every top-level key and table of the defaults is written out, so none goes undocumented.
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let written: toml::Value = toml::from_str(&live).unwrap();
    assert_eq!(written, defaults);
}
