//! glibc's NSS kept to the host's `files` service for every process cdirun forks.
//!
//! libcontainer 0.7 fills in a missing HOME with `getpwuid` inside the container's init, after
//! pivot_root and before the exec. glibc's NSS would then read the image's /etc/nsswitch.conf
//! and dlopen the modules it names from the image: code of the image would run in the init
//! before the container's process did, with cdirun's descriptors still open (its channel to
//! the create, the create's mark under `--root`, ...). runc reads /etc/passwd as a file and
//! never gets there. So before libcontainer forks, cdirun fixes the `passwd` and `group`
//! databases to `files` (built into glibc since 2.34; on an older one, loaded here, from the
//! host) and makes one lookup, which also stops glibc from ever reloading nsswitch.conf: the
//! init then reads the container's /etc/passwd as a file, as runc does. Goes when libcontainer
//! stops calling `getpwuid` in the init.

use std::ffi::{CStr, c_char, c_int};

unsafe extern "C" {
    /// glibc's `__nss_configure_lookup(3)`: sets the service line of one NSS database, in
    /// place of what /etc/nsswitch.conf says, for this process and what it forks.
    fn __nss_configure_lookup(db: *const c_char, service_line: *const c_char) -> c_int;
}

/// The databases libcontainer's init may consult, and the one service they keep.
const DATABASES: [&CStr; 2] = [c"passwd", c"group"];
const FILES: &CStr = c"files";

/// Keeps this process (and every process it forks from now on) to the `files` service for
/// the `passwd` and `group` databases.
pub fn files_only() {
    for db in DATABASES {
        // SAFETY: both arguments are NUL-terminated static strings; glibc copies what it keeps.
        let rc = unsafe { __nss_configure_lookup(db.as_ptr(), FILES.as_ptr()) };
        if rc != 0 {
            tracing::warn!("cannot keep NSS database {db:?} to files: {rc}");
        }
    }
    // One lookup while "/" is still the host's: the service is loaded now, not from the
    // container's /lib, and glibc no longer rereads nsswitch.conf after pivot_root.
    // SAFETY: getpwuid takes a uid and returns a pointer into static storage, not kept.
    unsafe { libc::getpwuid(0) };
}
