//! Reading the files cdirun is handed (config.json, the config file): regular files only. A FIFO
//! in their place would block the read forever and a directory gives a confusing error, so the
//! file is opened non-blocking and checked on the open descriptor, with no window between the
//! check and the read.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
}

impl ReadError {
    /// The file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(err) if err.kind() == io::ErrorKind::NotFound)
    }
}

/// The bytes of the regular file at `path` (following links) and its metadata.
pub fn read_regular(path: &Path) -> Result<(Vec<u8>, fs::Metadata), ReadError> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(&meta.file_type())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, meta))
}

/// What a non-regular file is, in words.
pub fn kind(kind: &fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device node"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "an unknown kind of file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_a_fifo_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert_eq!(read_regular(&file).unwrap().0, b"x");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_regular(&fifo).unwrap_err();
        assert_eq!(err.to_string(), "it is a FIFO, not a regular file");
        let err = read_regular(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "it is a directory, not a regular file");
        assert!(
            read_regular(&dir.path().join("nope"))
                .unwrap_err()
                .is_not_found()
        );
    }
}
