//! HOME for a process that has none, read as runc reads it, without glibc's NSS.
//!
//! libcontainer 0.7 fills in a missing HOME with `getpwuid` inside the container's init, after
//! pivot_root and before the exec. glibc's NSS follows the image's /etc/nsswitch.conf there and
//! dlopens the modules it names from the image's /lib: code of the image ran in the init before
//! the container's process did, with cdirun's descriptors still open (its channel to the
//! create, the create's mark under `--root`, ...). So cdirun never lets libcontainer look: the
//! process it is handed carries [`PLACEHOLDER`] as HOME, and the executor replaces it with the
//! home of the process's uid in the container's /etc/passwd, parsed as a text file, or `/` (runc's
//! answer for a uid without one). Goes when libcontainer stops calling `getpwuid` in the init.

use std::collections::HashMap;
use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;
use serde_json::Value;

/// HOME as libcontainer is given it when the client gave none (or an empty one): not a path a
/// client would send, and replaced before the process runs.
pub const PLACEHOLDER: &str = "//cdirun-home-from-passwd";

/// The longest /etc/passwd read; a longer one is not a passwd file, and the uid gets `/`.
const MAX_PASSWD: u64 = 4 << 20;

/// Gives the spec's process the placeholder HOME when it has none.
pub fn hold_place(spec: &mut Spec) {
    let Some(process) = spec.process_mut().as_mut() else {
        return;
    };
    let mut env = process.env().clone().unwrap_or_default();
    if with_placeholder(&mut env) {
        process.set_env(Some(env));
    }
}

/// [`hold_place`] for an exec's process, as the JSON object handed to libcontainer.
pub fn hold_place_in(process: &mut Value) {
    let Some(fields) = process.as_object_mut() else {
        return;
    };
    let mut env: Vec<String> = fields
        .get("env")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if with_placeholder(&mut env) {
        fields.insert("env".into(), env.into());
    }
}

/// Adds `HOME=<placeholder>` unless a non-empty HOME is set; whether it did.
fn with_placeholder(env: &mut Vec<String>) -> bool {
    let set = env
        .iter()
        .rev()
        .find_map(|entry| entry.strip_prefix("HOME="))
        .is_some_and(|home| !home.is_empty());
    if set {
        return false;
    }
    env.retain(|entry| !entry.starts_with("HOME="));
    env.push(format!("HOME={PLACEHOLDER}"));
    true
}

/// In the container's init, right before the exec (after pivot_root and the switch to the
/// process's uid): the placeholder, or a HOME still missing, becomes the uid's home from
/// `passwd` (the container's /etc/passwd), else `/`.
pub fn resolve(envs: &mut HashMap<String, String>, uid: u32, passwd: &Path) {
    let home = envs.entry("HOME".to_owned()).or_default();
    if home.is_empty() || home == PLACEHOLDER {
        *home = home_of(uid, passwd).unwrap_or_else(|| "/".to_owned());
    }
}

/// The home field of `uid`'s first entry in the passwd file at `path` (a regular file only: a
/// FIFO there would block the init), if it has a non-empty one.
fn home_of(uid: u32, path: &Path) -> Option<String> {
    let (bytes, meta) = crate::bundle::files::read_regular(path).ok()?;
    if meta.len() > MAX_PASSWD {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 7).then_some(fields)
        })
        .find(|fields| fields[2].parse::<u32>() == Ok(uid))
        .map(|fields| fields[5].to_owned())
        .filter(|home| !home.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_stands_in_only_for_a_missing_or_empty_home() {
        let cases: [(&[&str], &[&str]); 4] = [
            (
                &["PATH=/bin"],
                &["PATH=/bin", "HOME=//cdirun-home-from-passwd"],
            ),
            (
                &["HOME=", "A=b"],
                &["A=b", "HOME=//cdirun-home-from-passwd"],
            ),
            (&["HOME=/data"], &["HOME=/data"]),
            // The last HOME counts, as in execve's environment.
            (&["HOME=/a", "HOME="], &["HOME=//cdirun-home-from-passwd"]),
        ];
        for (input, want) in cases {
            let mut env: Vec<String> = input.iter().map(|s| s.to_string()).collect();
            with_placeholder(&mut env);
            assert_eq!(env, want, "{input:?}");
        }
    }

    #[test]
    fn home_comes_from_the_uids_passwd_entry_or_is_the_root_dir() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nbroken line\nnohome:x:7:7::: \nu:x:1000:1000:U:/home/u:/bin/sh\nu2:x:1000:1000::/other:/bin/sh\n",
        )
        .unwrap();
        let home = |uid: u32, path: &Path, given: Option<&str>| {
            let mut envs = HashMap::new();
            if let Some(given) = given {
                envs.insert("HOME".to_owned(), given.to_owned());
            }
            resolve(&mut envs, uid, path);
            envs["HOME"].clone()
        };
        assert_eq!(home(0, &passwd, Some(PLACEHOLDER)), "/root");
        assert_eq!(home(1000, &passwd, Some(PLACEHOLDER)), "/home/u");
        assert_eq!(home(1000, &passwd, None), "/home/u");
        assert_eq!(home(7, &passwd, Some(PLACEHOLDER)), "/");
        assert_eq!(home(4242, &passwd, Some("")), "/");
        assert_eq!(home(0, &dir.path().join("none"), Some(PLACEHOLDER)), "/");
        assert_eq!(home(0, &passwd, Some("/data")), "/data");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(home(0, &fifo, Some(PLACEHOLDER)), "/");
    }
}
