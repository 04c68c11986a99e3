//! `symlinks`: creates symlinks in the container rootfs (the vendor-neutral counterpart of
//! nvidia-cdi-hook create-symlinks), resolving every path inside the rootfs.

use crate::rootfs::{Root, RootError};
use crate::state::Target;

#[derive(Debug, thiserror::Error)]
pub enum SymlinksError {
    #[error("invalid --link {0:?}: use TARGET::LINK, LINK an absolute path in the container")]
    Spec(String),
    #[error(transparent)]
    Root(#[from] RootError),
}

/// One `--link TARGET::LINK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub link: String,
}

impl std::str::FromStr for Link {
    type Err = SymlinksError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once("::") {
            Some((target, link)) if !target.is_empty() && link.starts_with('/') => Ok(Self {
                target: target.to_owned(),
                link: link.to_owned(),
            }),
            _ => Err(SymlinksError::Spec(text.to_owned())),
        }
    }
}

/// Creates every link; all are checked before any is made, so a bad one changes nothing.
pub fn run(target: &Target, links: &[Link]) -> Result<(), SymlinksError> {
    for link in links {
        crate::rootfs::components(&link.link)?;
    }
    let root = Root::open(&target.rootfs)?;
    for link in links {
        root.symlink(&link.target, &link.link)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_syntax() {
        let link: Link = "../lib/libx.so.1::/usr/lib/libx.so".parse().unwrap();
        assert_eq!(link.target, "../lib/libx.so.1");
        assert_eq!(link.link, "/usr/lib/libx.so");
        for bad in ["nolink", "::/x", "t::relative", "t:/x"] {
            assert!(bad.parse::<Link>().is_err(), "{bad}");
        }
    }
}
