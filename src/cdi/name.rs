//! Qualified CDI device names (`vendor/class=name`) and the syntax of each part.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{name:?} is not a qualified CDI device name: expected vendor/class=name")]
    Unqualified { name: String },
    #[error("invalid vendor {part:?} in {name:?}: {why}")]
    Vendor {
        name: String,
        part: String,
        why: &'static str,
    },
    #[error("invalid class {part:?} in {name:?}: {why}")]
    Class {
        name: String,
        part: String,
        why: &'static str,
    },
    #[error("invalid device name {part:?} in {name:?}: {why}")]
    Device {
        name: String,
        part: String,
        why: &'static str,
    },
}

/// A parsed `vendor/class=name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Qualified {
    pub vendor: String,
    pub class: String,
    pub name: String,
}

impl fmt::Display for Qualified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.vendor, self.class, self.name)
    }
}

/// Parses and checks `vendor/class=name`.
pub fn parse_qualified(text: &str) -> Result<Qualified, NameError> {
    let unqualified = || NameError::Unqualified {
        name: text.to_owned(),
    };
    let (kind, name) = text.split_once('=').ok_or_else(unqualified)?;
    let (vendor, class) = kind.split_once('/').ok_or_else(unqualified)?;
    if vendor.is_empty() || class.is_empty() || name.is_empty() {
        return Err(unqualified());
    }
    check_vendor(vendor).map_err(|why| NameError::Vendor {
        name: text.to_owned(),
        part: vendor.to_owned(),
        why,
    })?;
    check_class(class).map_err(|why| NameError::Class {
        name: text.to_owned(),
        part: class.to_owned(),
        why,
    })?;
    check_device_name(name).map_err(|why| NameError::Device {
        name: text.to_owned(),
        part: name.to_owned(),
        why,
    })?;
    Ok(Qualified {
        vendor: vendor.to_owned(),
        class: class.to_owned(),
        name: name.to_owned(),
    })
}

/// Splits and checks a spec's `kind` (`vendor/class`).
pub fn parse_kind(kind: &str) -> Result<(&str, &str), String> {
    let (vendor, class) = kind
        .split_once('/')
        .filter(|(v, c)| !v.is_empty() && !c.is_empty() && !c.contains('/'))
        .ok_or_else(|| format!("{kind:?} is not of the form vendor/class"))?;
    check_vendor(vendor).map_err(|why| format!("invalid vendor {vendor:?}: {why}"))?;
    check_class(class).map_err(|why| format!("invalid class {class:?}: {why}"))?;
    Ok((vendor, class))
}

fn check_vendor_or_class(part: &str) -> Result<(), &'static str> {
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => Err("empty"),
        (Some(first), _) if !first.is_ascii_alphabetic() => Err("must start with a letter"),
        (_, Some(last)) if !last.is_ascii_alphanumeric() => Err("must end with a letter or digit"),
        _ if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) =>
        {
            Err("may contain only letters, digits, '_', '.' and '-'")
        }
        _ => Ok(()),
    }
}

pub fn check_vendor(vendor: &str) -> Result<(), &'static str> {
    check_vendor_or_class(vendor)
}

pub fn check_class(class: &str) -> Result<(), &'static str> {
    check_vendor_or_class(class)
}

/// Device names start and end with a letter or digit and may also hold `_ . - :`.
pub fn check_device_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => Err("empty"),
        (Some(first), _) if !first.is_ascii_alphanumeric() => {
            Err("must start with a letter or digit")
        }
        (_, Some(last)) if !last.is_ascii_alphanumeric() => Err("must end with a letter or digit"),
        _ if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':')) =>
        {
            Err("may contain only letters, digits, '_', '.', '-' and ':'")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_name_table() {
        let ok = [
            ("nvidia.com/gpu=0", "nvidia.com", "gpu", "0"),
            ("amd.com/gpu=GPU-1a:2b", "amd.com", "gpu", "GPU-1a:2b"),
            (
                "intel.cdi.k8s.io/gpu=card0",
                "intel.cdi.k8s.io",
                "gpu",
                "card0",
            ),
            ("v/c.x-y_z=n", "v", "c.x-y_z", "n"),
        ];
        for (text, vendor, class, name) in ok {
            let q = parse_qualified(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((q.vendor.as_str(), q.class.as_str()), (vendor, class));
            assert_eq!(q.name, name);
            assert_eq!(q.to_string(), text);
        }
        let bad = [
            "gpu0",
            "nvidia.com/gpu",
            "nvidia.com=0",
            "/gpu=0",
            "nvidia.com/=0",
            "nvidia.com/gpu=",
            "1vendor/gpu=0",
            "vendor-/gpu=0",
            "vendor/gpu-=0",
            "vendor/g:pu=0",
            "vendor/gpu=:0",
            "vendor/gpu=0:",
            "vendor/gpu=a b",
            "vendor/x/gpu=0",
        ];
        for text in bad {
            assert!(parse_qualified(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn kind_table() {
        assert_eq!(parse_kind("nvidia.com/gpu").unwrap(), ("nvidia.com", "gpu"));
        for bad in ["nvidia.com", "a/b/c", "/gpu", "v/", "v/_c", "9v/c"] {
            assert!(parse_kind(bad).is_err(), "{bad}");
        }
    }
}
