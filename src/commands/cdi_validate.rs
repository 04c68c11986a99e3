//! `cdi validate [FILES]`: every problem in the given spec files (or all in the spec dirs, with
//! the conflicts between them), one line each as `file: field: problem`; non-zero on problems.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::cdi::registry::{self, LoadProblem, Registry};
use crate::cdi::spec;
use crate::cli::ValidateArgs;
use crate::config::{self, Config};

pub fn validate(args: ValidateArgs) -> Result<i32> {
    let mut out = String::new();
    let mut problems = 0;
    let from_dirs = args.files.is_empty();
    let files = if from_dirs {
        let loaded = Config::load(std::env::var_os(config::ENV_VAR).as_deref())?;
        let mut files = Vec::new();
        for dir in &loaded.config.cdi.spec_dirs {
            match registry::spec_files(dir) {
                Ok(listing) => {
                    for not_a_file in &listing.not_files {
                        writeln!(out, "{not_a_file}")?;
                        problems += 1;
                    }
                    files.extend(listing.files);
                }
                Err(err) => {
                    writeln!(out, "{}: cannot list spec dir: {err}", dir.display())?;
                    problems += 1;
                }
            }
        }
        // Conflicts only exist between files: let the registry find them.
        let registry = Registry::load(&loaded.config.cdi.spec_dirs);
        for problem in &registry.problems {
            if let LoadProblem::Conflict { .. } = problem {
                writeln!(out, "{problem}")?;
                problems += 1;
            }
        }
        files
    } else {
        args.files
    };
    let checked = files.len();
    for file in files {
        problems += check(&file, &mut out);
    }
    super::print(&out)?;
    super::print_err(&format!(
        "{checked} spec file(s) checked, {problems} problem(s)"
    ));
    Ok(if problems == 0 { 0 } else { 1 })
}

/// Adds the file's problems (or `ok`) to `out` and returns how many there are. A path that is
/// no regular file is named and never opened (a FIFO would block the read).
fn check(file: &Path, out: &mut String) -> usize {
    if let Err(not_a_file) = registry::check_regular(file) {
        let _ = writeln!(out, "{not_a_file}");
        return 1;
    }
    match spec::load(file) {
        Ok(_) => {
            let _ = writeln!(out, "{}: ok", file.display());
            0
        }
        Err(err) => {
            let problems = err.problems();
            for problem in &problems {
                let _ = writeln!(out, "{}: {problem}", file.display());
            }
            problems.len()
        }
    }
}
