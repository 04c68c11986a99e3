//! The one place where cdirun makes libcontainer 0.7's objects, and everything it adds there to
//! behave like runc. `commands/` get them only from here: [`create()`] and [`exec::exec`] build,
//! [`load`] and [`cgroup_manager`] open what is under `--root`, and [`late_hooks`] starts and
//! deletes. The verbs that only change a container's state (`kill`, `pause`, `resume`, `ps`,
//! `update`, `events`) call the loaded container or manager directly: libcontainer does those
//! as runc does, so nothing is added for them.
//!
//! Each module's first lines name the libcontainer behaviour it covers, so this is the list of
//! code that can go when libcontainer is fixed, with the test that fails when the cover is
//! removed:
//!
//! | module | covers | test |
//! |---|---|---|
//! | [`mounts`] | mounts libcontainer refuses: `tmpcopyup`, a tmpfs without source, `r*` root propagation | client_compat `tmpcopyup_fills_the_tmpfs_with_the_image_files`, `tmpfs_without_source_is_mounted`; propagation `every_propagation_runc_takes_runs_and_root_gets_runcs_propagation` |
//! | [`finish`] | what runc does at create and libcontainer leaves out: loopback up, tmpfs modes, the `tmpcopyup` copy, read-only cgroup mounts | client_compat `loopback_is_up_in_a_new_network_namespace`, `tmpcopyup_fills_the_tmpfs_with_the_image_files`, `cgroup_mounts_get_their_options_and_limits_stay_out_of_reach` |
//! | [`cgroups`] | the hierarchies it does not manage, `disableOOMKiller`, device rules under systemd on cgroup v2, a cgroup tree on a failed create | parity `a_private_cgroup_namespace_shows_root_in_every_hierarchy`, `runtime_hooks_run_in_the_runtimes_cgroup_and_the_container_sees_root`; lifecycle `disable_oom_killer_reaches_the_memory_cgroup`; slices `a_failed_create_removes_the_cgroups_a_hook_made_below_the_container`; the cgroupv2 VM suite's systemd device checks |
//! | [`exec`] | the user namespace an exec cannot join, seccomp for execs, per-exec files left behind, a missing cwd | lifecycle `exec_into_a_container_with_its_own_user_namespace_is_refused`, `exec_runs_under_the_container_seccomp_filter`, `execs_leave_no_files_in_the_state_dir`; errors `exec_into_a_missing_cwd_names_the_directory` |
//! | [`nss`] | HOME looked up with `getpwuid` in the init, which would load the image's NSS modules before the exec | lifecycle `an_nss_module_in_the_image_never_loads_in_the_runtime` |
//! | [`executor`] | runc's check of the command and runc's HOME | client_compat `missing_absolute_command_is_reported_in_runc_words`, `command_not_in_path_is_reported_in_runc_words`; lifecycle `home_comes_from_the_image_passwd_or_is_the_root_dir` |
//! | [`late_hooks`] | `poststart` and `poststop` failures as warnings, not the verb's error | parity `a_failing_poststart_hook_is_a_warning_and_the_container_runs`, `a_failing_poststop_hook_leaves_delete_succeeding` |
//! | [`hook_failure`] | error lines naming the failed hook's stage, index and path | hooks `a_failed_create_runtime_hook_is_named_with_its_exit_status`, `a_failed_create_container_hook_is_named` |
//! | [`hook_output`] | hooks' output kept off the container's streams | parity `hook_output_goes_to_the_log_and_never_to_the_container_streams` |
//! | [`precheck`] | refusals libcontainer makes late or without naming the thing | errors `a_missing_rootfs_is_named`, `a_refused_oom_score_adj_names_the_file` and the rest of errors.rs |
//! | [`seccomp`] | profiles libcontainer would hang on (`SCMP_ACT_NOTIFY`) | parity `a_seccomp_notify_profile_is_refused_at_once` |
//! | [`creation`] | the processes of a create killed part-way, which inherit its descriptors | crash `create_killed_at_random_moments_is_cleaned_by_one_delete_force` and the staged kills |
//!
//! These stay when libcontainer is fixed:
//!
//! - [`seal`]: protection against CVE-2019-5736, which libcontainer leaves to the binary that
//!   embeds it (cli `runtime_binary_cannot_be_reopened_for_writing_through_proc_exe`).
//! - [`hook_stage`]: the runtime spec's hook stage names, which CDI specs, hooks.d files and
//!   `features` share.

pub mod cgroups;
pub mod container;
pub mod create;
pub mod creation;
pub mod exec;
pub mod executor;
pub mod finish;
pub mod hook_failure;
pub mod hook_output;
pub mod hook_stage;
pub mod late_hooks;
pub mod mounts;
pub mod nss;
pub mod precheck;
pub mod seal;
pub mod seccomp;

use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;

pub use cgroups::Cgroups;
pub use container::{cgroup_manager, load};
pub use create::{Created, Init, create};

/// What libcontainer would refuse only late, or without naming the thing, checked on the
/// client's config before any edit takes a claim.
pub fn check(bundle: &Path, spec: &Spec) -> anyhow::Result<()> {
    precheck::spec(bundle, spec)?;
    seccomp::check(spec)?;
    mounts::root_propagation(spec)?;
    Ok(())
}
