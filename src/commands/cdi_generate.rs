//! `cdi generate`: CDI specs for the host's GPUs, written atomically into a spec dir or file,
//! or printed; each is checked with the same validation `cdi validate` applies before it is
//! written, and a definition it collides with in the same dir is reported.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cdi::Registry;
use crate::cdi::generate::{self, Format, Generated, HookKind, Options, Vendor};
use crate::cdi::registry::LoadProblem;
use crate::cdi::spec;
use crate::cli::{DisabledHook, GenerateArgs, GenerateVendor, SpecFormat};

pub fn generate(args: GenerateArgs) -> Result<()> {
    let host = args.host.host();
    let vendors = match args.vendor {
        GenerateVendor::Nvidia => vec![Vendor::Nvidia],
        GenerateVendor::Amd => vec![Vendor::Amd],
        GenerateVendor::Intel => vec![Vendor::Intel],
        GenerateVendor::All => Vendor::ALL.to_vec(),
    };
    let options = Options {
        hook: args.hook_path.clone(),
        disabled: args
            .disable_hook
            .iter()
            .map(|h| match h {
                DisabledHook::Ldcache => HookKind::Ldcache,
                DisabledHook::Symlinks => HookKind::Symlinks,
            })
            .collect(),
    };
    let generated = generate::generate(&host, &vendors, &options)?;
    for one in &generated {
        for warning in &one.warnings {
            super::print_err(&format!(
                "cdirun: warning: {}: {warning}",
                one.vendor.name()
            ));
        }
        let problems = spec::validate(&one.spec);
        if !problems.is_empty() {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            bail!(
                "the generated {} spec is invalid, so nothing was written: {}",
                one.spec.kind,
                problems.join("; ")
            );
        }
    }
    let asked = args.format.map(|f| match f {
        SpecFormat::Yaml => Format::Yaml,
        SpecFormat::Json => Format::Json,
    });
    if args.output == Path::new("-") {
        let format = asked.unwrap_or(Format::Yaml);
        let texts: Vec<String> = generated
            .iter()
            .map(|g| generate::render(&g.spec, format))
            .collect();
        let separator = match format {
            Format::Yaml => "---\n",
            Format::Json => "",
        };
        super::print(&texts.join(separator))?;
        return Ok(());
    }
    let targets: Vec<(PathBuf, Format, &Generated)> = if args.output.is_dir() {
        let format = asked.unwrap_or(Format::Yaml);
        generated
            .iter()
            .map(|g| {
                let name = format!("cdirun-{}.{}", g.vendor.name(), format.extension());
                (args.output.join(name), format, g)
            })
            .collect()
    } else {
        let [one] = generated.as_slice() else {
            let vendors: Vec<&str> = generated.iter().map(|g| g.vendor.name()).collect();
            bail!(
                "GPUs of several vendors found ({}), but --output {} names one file: give a spec dir or one --vendor",
                vendors.join(", "),
                args.output.display()
            );
        };
        let Some(by_name) = Format::of_file(&args.output) else {
            bail!(
                "{}: a spec file's name must end in .yaml or .json (the spec dirs hold only those)",
                args.output.display()
            );
        };
        if asked.is_some_and(|f| f != by_name) {
            bail!(
                "{}: --format {} does not match the file's extension",
                args.output.display(),
                asked.map(Format::extension).unwrap_or_default()
            );
        }
        vec![(args.output.clone(), by_name, one)]
    };
    for (path, format, one) in targets {
        generate::write(&path, &generate::render(&one.spec, format), args.force)?;
        let devices = one.spec.devices.len();
        super::print_err(&format!(
            "wrote {} ({devices} devices of kind {})",
            path.display(),
            one.spec.kind
        ));
        warn_conflicts(&path)?;
    }
    Ok(())
}

/// Warns when another spec in the same dir defines a device the new file defines: at the same
/// priority, CDI uses neither definition.
fn warn_conflicts(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir =
        std::path::absolute(dir).with_context(|| format!("invalid path {}", dir.display()))?;
    let absolute = dir.join(path.file_name().unwrap_or_default());
    let registry = Registry::load(std::slice::from_ref(&dir));
    for problem in &registry.problems {
        if let LoadProblem::Conflict { paths, .. } = problem {
            if paths.iter().any(|p| p == &absolute || p == path) {
                super::print_err(&format!(
                    "cdirun: warning: {problem}; remove the other spec (e.g. one nvidia-ctk wrote) or write this one elsewhere"
                ));
            }
        }
    }
    Ok(())
}
