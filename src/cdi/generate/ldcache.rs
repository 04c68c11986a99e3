//! Reads the dynamic linker's cache (`/etc/ld.so.cache`) in glibc's binary format: the
//! `glibc-ld.so.cache1.1` layout, alone (glibc 2.32 and later) or after the old
//! `ld.so-1.7.0` table (the compat layout older ldconfigs wrote). Only the new table is read.

use std::path::{Path, PathBuf};

/// Magic and version at the start of the new-format table.
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// Magic of the old-format table that may come first.
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
/// The new header: magic+version (20), nlibs, len_strings, flags (1) + 3 unused, extension
/// offset, 3 unused words.
const NEW_HEADER: usize = 48;
/// One new entry: flags, key, value, osversion (4 bytes each), hwcap (8).
const NEW_ENTRY: usize = 24;
/// One old entry: flags, key, value.
const OLD_ENTRY: usize = 12;
/// `flags` byte of the new header: the cache's byte order (0: written before glibc said).
const ORDER_LITTLE: u8 = 2;
const ORDER_BIG: u8 = 3;

/// Entry flags: an ELF library for glibc, and the architecture bits of 64-bit ones.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
pub const FLAG_TYPE_MASK: i32 = 0x00ff;
#[cfg(target_arch = "x86_64")]
pub const FLAG_NATIVE: Option<i32> = Some(0x0300 | FLAG_ELF_LIBC6);
#[cfg(target_arch = "aarch64")]
pub const FLAG_NATIVE: Option<i32> = Some(0x0a00 | FLAG_ELF_LIBC6);
#[cfg(target_arch = "powerpc64")]
pub const FLAG_NATIVE: Option<i32> = Some(0x0500 | FLAG_ELF_LIBC6);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "powerpc64"
)))]
pub const FLAG_NATIVE: Option<i32> = None;

#[derive(Debug, thiserror::Error)]
pub enum LdcacheError {
    #[error("cannot read the linker cache {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid linker cache {path}: {why}; regenerate it with ldconfig")]
    Invalid { path: PathBuf, why: String },
}

/// One library the cache knows: its soname (`libc.so.6`) and the path ldconfig recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub flags: i32,
    pub name: String,
    pub path: PathBuf,
    pub hwcap: u64,
}

impl Entry {
    /// Whether the library is one the running process could load (same architecture).
    pub fn is_native(&self) -> bool {
        match FLAG_NATIVE {
            Some(native) => self.flags == native,
            None => self.flags & FLAG_TYPE_MASK == FLAG_ELF_LIBC6,
        }
    }
}

/// Reads and parses the cache at `path`.
pub fn read(path: &Path) -> Result<Vec<Entry>, LdcacheError> {
    let bytes = std::fs::read(path).map_err(|cause| LdcacheError::Read {
        path: path.to_owned(),
        cause,
    })?;
    parse(&bytes).map_err(|why| LdcacheError::Invalid {
        path: path.to_owned(),
        why,
    })
}

fn u32_at(bytes: &[u8], at: usize, big: bool) -> Result<u32, String> {
    let word: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated at byte {at}"))?;
    Ok(if big {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    })
}

fn u64_at(bytes: &[u8], at: usize, big: bool) -> Result<u64, String> {
    let word: [u8; 8] = bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated at byte {at}"))?;
    Ok(if big {
        u64::from_be_bytes(word)
    } else {
        u64::from_le_bytes(word)
    })
}

/// The NUL-terminated string at `at`.
fn string_at(bytes: &[u8], at: usize) -> Result<String, String> {
    let rest = bytes
        .get(at..)
        .ok_or_else(|| format!("string offset {at} is past the end"))?;
    let end = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| format!("string at {at} is not terminated"))?;
    String::from_utf8(rest[..end].to_vec()).map_err(|_| format!("string at {at} is not UTF-8"))
}

/// Parses cache bytes; the error says what is wrong with them.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let start = if bytes.starts_with(NEW_MAGIC) {
        0
    } else if bytes.starts_with(OLD_MAGIC) {
        // Old header: 11 bytes of magic, padding to 12, the entry count; entries follow. The
        // new table starts after them, aligned as its header is (8 bytes).
        let count = u32_at(bytes, 12, cfg!(target_endian = "big"))? as usize;
        let end = count
            .checked_mul(OLD_ENTRY)
            .and_then(|n| n.checked_add(16))
            .ok_or("old table too large")?;
        let new = end.next_multiple_of(8);
        if !bytes.get(new..).is_some_and(|b| b.starts_with(NEW_MAGIC)) {
            return Err("only the old ld.so-1.7.0 format, which cdirun does not read".to_owned());
        }
        new
    } else {
        return Err("no glibc-ld.so.cache1.1 magic at its start".to_owned());
    };
    let table = &bytes[start..];
    let big = match table.get(32) {
        Some(&ORDER_BIG) => true,
        Some(&ORDER_LITTLE) => false,
        Some(_) => cfg!(target_endian = "big"),
        None => return Err("truncated header".to_owned()),
    };
    let count = u32_at(table, 20, big)? as usize;
    let need = count
        .checked_mul(NEW_ENTRY)
        .and_then(|n| n.checked_add(NEW_HEADER))
        .ok_or("entry count too large")?;
    if table.len() < need {
        return Err(format!(
            "{count} entries need {need} bytes, the table has {}",
            table.len()
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let at = NEW_HEADER + i * NEW_ENTRY;
        // String offsets count from the start of the new table.
        let key = u32_at(table, at + 4, big)? as usize;
        let value = u32_at(table, at + 8, big)? as usize;
        entries.push(Entry {
            flags: u32_at(table, at, big)? as i32,
            name: string_at(table, key).map_err(|why| format!("entry {i}: {why}"))?,
            path: PathBuf::from(
                string_at(table, value).map_err(|why| format!("entry {i}: {why}"))?,
            ),
            hwcap: u64_at(table, at + 16, big)?,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machines_cache_names_libc() {
        let entries = read(Path::new("/etc/ld.so.cache")).unwrap();
        let libc = entries
            .iter()
            .find(|e| e.name == "libc.so.6" && e.is_native())
            .expect("no native libc.so.6 in /etc/ld.so.cache");
        assert!(
            libc.path.ends_with("libc.so.6") && libc.path.is_absolute(),
            "{libc:?}"
        );
        assert!(libc.path.exists(), "{libc:?}");
    }

    #[test]
    fn broken_caches_are_refused_saying_why() {
        let real = std::fs::read("/etc/ld.so.cache").unwrap();
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("empty", Vec::new(), "magic"),
            (
                "other magic",
                b"not a cache at all, really".to_vec(),
                "magic",
            ),
            (
                "truncated entries",
                real[..NEW_HEADER + 10].to_vec(),
                "entries need",
            ),
            (
                "old format only",
                [OLD_MAGIC, &[0, 0, 0, 0, 0]].concat(),
                "old ld.so-1.7.0",
            ),
        ];
        for (name, bytes, want) in cases {
            let err = parse(&bytes).unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ld.so.cache");
        std::fs::write(&path, b"junk").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_string_offset_past_the_end_is_an_error_not_a_panic() {
        let mut bytes = std::fs::read("/etc/ld.so.cache").unwrap();
        let count = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
        assert!(count > 0);
        bytes[NEW_HEADER + 8..NEW_HEADER + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse(&bytes).unwrap_err();
        assert!(
            err.contains("entry 0") && err.contains("past the end"),
            "{err}"
        );
    }
}
