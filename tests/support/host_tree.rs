//! Fake host trees for `cdi generate` and `doctor`: a root dir with the sysfs, procfs and /dev
//! entries a GPU driver makes (device nodes are real, mknod'ed character devices), driver
//! libraries that are real ELF shared objects (built with `cc`) and a linker cache that the
//! real `ldconfig` writes for them. Included with `#[path]` by the tests that use it.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

pub const DRIVER: &str = "550.54.14";
pub const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
pub const UUID0: &str = "GPU-3e6f3e62-b1c0-4a4e-8f6f-b0b5c0ef8d0f";
pub const UUID1: &str = "GPU-8a1d2c3b-4e5f-6a7b-8c9d-0e1f2a3b4c5d";
pub const BUS0: &str = "0000:3b:00.0";
pub const BUS1: &str = "0000:86:00.0";
/// Major of the fake nvidia-uvm and nvidia-caps nodes (dynamic on a real host).
pub const UVM_MAJOR: u64 = 511;
pub const CAPS_MAJOR: u64 = 510;

pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    /// An empty root: a node with no GPU.
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the fixture trees mknod device nodes: run the tests as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("cdirun-host-")
            .tempdir()
            .unwrap();
        let tree = Tree { dir };
        for sub in ["sys", "proc", "dev", "etc"] {
            fs::create_dir_all(tree.path(sub)).unwrap();
        }
        tree
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    pub fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.path(rel)).unwrap();
    }

    /// A character device `dev/<name>`, mode 0666.
    pub fn node(&self, name: &str, major: u64, minor: u64) {
        let path = self.path(&format!("dev/{name}"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .unwrap();
    }

    /// A real shared object `<dir>/<file>` with `soname`, built by `cc` (which cargo needs as
    /// its linker anyway).
    pub fn library(&self, dir: &str, file: &str, soname: &str) {
        let out_dir = self.path(dir);
        fs::create_dir_all(&out_dir).unwrap();
        let out = Command::new("cc")
            .args(["-shared", "-nostdlib", "-x", "c", "/dev/null", "-o"])
            .arg(out_dir.join(file))
            .arg(format!("-Wl,-soname,{soname}"))
            .output()
            .expect("cc (the C compiler cargo links with) is needed to build fixture libraries");
        assert!(
            out.status.success(),
            "cc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `etc/ld.so.conf` naming `dirs` and runs the real ldconfig chrooted in the tree, so
    /// `etc/ld.so.cache` holds the tree's libraries at the paths the tree's root sees.
    pub fn ldconfig(&self, dirs: &[&str]) {
        let conf: String = dirs.iter().map(|d| format!("/{d}\n")).collect();
        self.write("etc/ld.so.conf", &conf);
        let out = Command::new("ldconfig")
            .arg("-r")
            .arg(self.root())
            .args(["-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf"])
            .output()
            .expect("ldconfig is needed to build the fixture linker cache");
        assert!(
            out.status.success(),
            "ldconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Two NVIDIA GPUs (V100 at 3b:00.0, A100 at 86:00.0 with one MIG instance) with driver
    /// DRIVER: procfs, sysfs DRM dirs, device nodes, libraries, nvidia-smi and GSP firmware.
    pub fn nvidia(&self) {
        self.write(
            "proc/driver/nvidia/version",
            &format!(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {DRIVER}  Thu Feb 22 01:44:30 UTC 2024\n\
                 GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
            ),
        );
        for (bus, minor, uuid, model, card, render) in [
            (BUS0, 0, UUID0, "Tesla V100-PCIE-16GB", 1, 128),
            (BUS1, 1, UUID1, "NVIDIA A100-SXM4-40GB", 2, 129),
        ] {
            self.write(
                &format!("proc/driver/nvidia/gpus/{bus}/information"),
                &format!(
                    "Model: \t\t {model}\nIRQ:   \t\t 40\nGPU UUID: \t {uuid}\nVideo BIOS: \t 88.00.4f.00.09\n\
                     Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\n\
                     Bus Location: \t {bus}\nDevice Minor: \t {minor}\nGPU Excluded:\t No\n"
                ),
            );
            self.mkdir(&format!("sys/bus/pci/devices/{bus}/drm/card{card}"));
            self.mkdir(&format!("sys/bus/pci/devices/{bus}/drm/renderD{render}"));
            self.node(&format!("nvidia{minor}"), 195, minor);
            self.node(&format!("dri/card{card}"), 226, card);
            self.node(&format!("dri/renderD{render}"), 226, render);
        }
        self.node("nvidiactl", 195, 255);
        self.node("nvidia-modeset", 195, 254);
        self.node("nvidia-uvm", UVM_MAJOR, 0);
        self.node("nvidia-uvm-tools", UVM_MAJOR, 1);
        // GPU 1 is in MIG mode with GPU instance 1 and its compute instance 0.
        self.write(
            "proc/driver/nvidia-caps/mig-minors",
            "config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\n\
             gpu1/gi1/access 21\ngpu1/gi1/ci0/access 22\n",
        );
        self.write(
            "proc/driver/nvidia/capabilities/gpu1/mig/gi1/access",
            "DeviceFileMinor: 21\nDeviceFileMode: 292\nDeviceFileModify: 1\n",
        );
        self.write(
            "proc/driver/nvidia/capabilities/gpu1/mig/gi1/ci0/access",
            "DeviceFileMinor: 22\nDeviceFileMode: 292\nDeviceFileModify: 1\n",
        );
        self.node("nvidia-caps/nvidia-cap21", CAPS_MAJOR, 21);
        self.node("nvidia-caps/nvidia-cap22", CAPS_MAJOR, 22);
        for (lib, soname) in [
            ("libcuda", "libcuda.so.1"),
            ("libnvidia-ml", "libnvidia-ml.so.1"),
            ("libnvidia-ptxjitcompiler", "libnvidia-ptxjitcompiler.so.1"),
        ] {
            self.library(LIB_DIR, &format!("{lib}.so.{DRIVER}"), soname);
        }
        self.library(
            &format!("{LIB_DIR}/vdpau"),
            &format!("libvdpau_nvidia.so.{DRIVER}"),
            "libvdpau_nvidia.so.1",
        );
        // Left behind by an older driver: must not be mounted.
        self.library(
            LIB_DIR,
            "libnvidia-tls.so.535.104.05",
            "libnvidia-tls.so.535.104.05",
        );
        self.ldconfig(&[LIB_DIR, &format!("{LIB_DIR}/vdpau")]);
        self.write(
            "usr/bin/nvidia-smi",
            "#!/bin/sh\necho \"GPU 0: fake (UUID: GPU-fake)\"\n",
        );
        fs::set_permissions(
            self.path("usr/bin/nvidia-smi"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        self.write(
            &format!("lib/firmware/nvidia/{DRIVER}/gsp_ga10x.bin"),
            "firmware\n",
        );
        self.write(
            &format!("lib/firmware/nvidia/{DRIVER}/gsp_tu10x.bin"),
            "firmware\n",
        );
    }

    /// Two AMD GPUs in the KFD topology (node 0 is the CPU) with render nodes 128 and 129.
    pub fn amd(&self) {
        self.amd_at(128);
    }

    /// Two AMD GPUs whose render nodes are `first` and `first + 1`.
    pub fn amd_at(&self, first: u64) {
        let topology = "sys/class/kfd/kfd/topology/nodes";
        self.write(&format!("{topology}/0/gpu_id"), "0\n");
        self.write(
            &format!("{topology}/0/properties"),
            "cpu_cores_count 32\nsimd_count 0\ndrm_render_minor 0\n",
        );
        for (node, id, render, bus) in [
            (1, 4660, first, "0000:03:00.0"),
            (2, 22136, first + 1, "0000:83:00.0"),
        ] {
            self.write(&format!("{topology}/{node}/gpu_id"), &format!("{id}\n"));
            self.write(&format!("{topology}/{node}/name"), "gfx90a\n");
            self.write(
                &format!("{topology}/{node}/properties"),
                &format!("cpu_cores_count 0\nsimd_count 440\ndrm_render_minor {render}\n"),
            );
            self.mkdir(&format!("sys/devices/pci0000:00/{bus}/drm/renderD{render}"));
            self.mkdir(&format!("sys/class/drm/renderD{render}"));
            symlink(
                format!("../../../devices/pci0000:00/{bus}"),
                self.path(&format!("sys/class/drm/renderD{render}/device")),
            )
            .unwrap();
            self.node(&format!("dri/renderD{render}"), 226, render);
        }
        self.node("kfd", 236, 0);
    }

    /// One Intel GPU (card0, renderD128 at 00:02.0), an NVIDIA card that is not Intel's, and a
    /// connector entry that is no card.
    pub fn intel(&self) {
        for (card, render, bus, vendor) in [
            ("card0", "renderD128", "0000:00:02.0", "0x8086"),
            ("card1", "renderD129", "0000:01:00.0", "0x10de"),
        ] {
            let device = format!("sys/devices/pci0000:00/{bus}");
            self.write(&format!("{device}/vendor"), &format!("{vendor}\n"));
            self.mkdir(&format!("{device}/drm/{card}"));
            self.mkdir(&format!("{device}/drm/{render}"));
            self.mkdir(&format!("sys/class/drm/{card}"));
            symlink(
                format!("../../../devices/pci0000:00/{bus}"),
                self.path(&format!("sys/class/drm/{card}/device")),
            )
            .unwrap();
        }
        self.mkdir("sys/class/drm/card0-DP-1");
        self.node("dri/card0", 226, 0);
        self.node("dri/renderD128", 226, 128);
    }
}
