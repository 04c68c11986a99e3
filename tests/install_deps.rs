//! scripts/install-deps.sh installs every package the test suites use: a fresh machine runs
//! the README's test command without anything installed by hand.

const SCRIPT: &str = include_str!("../scripts/install-deps.sh");

/// The packages of the script's `test` list, its `"${list[@]}"` inclusions expanded.
fn test_packages() -> Vec<String> {
    fn list(name: &str) -> Vec<String> {
        let start = format!("{name}=(");
        let line = SCRIPT
            .lines()
            .find(|line| line.starts_with(&start))
            .unwrap_or_else(|| panic!("install-deps.sh has no {name} list"));
        let words = line[start.len()..].trim_end_matches(')');
        words
            .split_whitespace()
            .flat_map(|word| match word.strip_prefix("\"${") {
                Some(included) => list(included.trim_end_matches("[@]}\"")),
                None => vec![word.to_owned()],
            })
            .collect()
    }
    list("test")
}

/// Regression: podman's `run --init` (conformance/clients/podman.sh) needs catatonit, which no
/// list installed, so the podman suite failed on a fresh machine.
#[test]
fn the_test_list_has_every_package_the_suites_run() {
    let packages = test_packages();
    // (package, what needs it)
    let needed = [
        ("busybox-static", "every container's rootfs"),
        ("runc", "runtime-tools --compare and the parity checks"),
        ("crun", "runtime-tools --compare"),
        ("podman", "conformance/clients/podman.sh"),
        ("conmon", "podman"),
        (
            "catatonit",
            "podman run --init (/usr/libexec/podman/catatonit)",
        ),
        ("containerd", "conformance/clients/containerd.sh"),
        ("libseccomp-dev", "building cdirun"),
    ];
    for (package, user) in needed {
        assert!(
            packages.iter().any(|p| p == package),
            "install-deps.sh test does not install {package}, which {user} needs: {packages:?}"
        );
    }
}
