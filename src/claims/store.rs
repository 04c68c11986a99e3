//! A JSON state file in `state-dir`, read and replaced under an exclusive flock on a lock file
//! beside it: the shape the GPU ledger and the MPS references share. The data file is replaced
//! by rename, so a crash leaves the old or the new contents, never part of them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} {path}: {cause}")]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The data of one state file, held under its lock until dropped.
pub struct Locked<T> {
    _lock: Flock<File>,
    path: PathBuf,
    pub data: T,
}

/// Takes the lock `<state_dir>/<lock_file>` and reads `<state_dir>/<data_file>` (absent: the
/// default), creating the dir and the lock file as needed. Blocks while another process holds it.
pub fn lock<T: DeserializeOwned + Default>(
    state_dir: &Path,
    lock_file: &str,
    data_file: &str,
) -> Result<Locked<T>, StoreError> {
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |cause| StoreError::Io { what, path, cause }
    };
    fs::create_dir_all(state_dir).map_err(io("create state dir", state_dir))?;
    let lock_path = state_dir.join(lock_file);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io("lock", &lock_path)(errno.into()))?;
    let path = state_dir.join(data_file);
    let data = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| StoreError::Corrupt {
            path: path.clone(),
            message: err.to_string(),
        })?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => T::default(),
        Err(cause) => return Err(io("read", &path)(cause)),
    };
    Ok(Locked {
        _lock: lock,
        path,
        data,
    })
}

impl<T: Serialize> Locked<T> {
    /// Writes the data back (temp file, fsync, rename), still under the lock.
    pub fn save(&self) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            // One write(2): serde_json writes a File token by token.
            let mut text = serde_json::to_vec_pretty(&self.data)?;
            text.push(b'\n');
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|cause| StoreError::Io {
            what: "write",
            path: self.path.clone(),
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn absent_file_is_default_and_save_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut locked: Locked<BTreeMap<String, u32>> =
            lock(dir.path(), "x.lock", "x.json").unwrap();
        assert!(locked.data.is_empty());
        locked.data.insert("a".into(), 1);
        locked.save().unwrap();
        drop(locked);
        let again: Locked<BTreeMap<String, u32>> = lock(dir.path(), "x.lock", "x.json").unwrap();
        assert_eq!(again.data, BTreeMap::from([("a".to_owned(), 1)]));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.json"), "{").unwrap();
        let err = lock::<BTreeMap<String, u32>>(dir.path(), "x.lock", "x.json")
            .err()
            .unwrap();
        assert!(err.to_string().contains("x.json"), "{err}");
    }
}
