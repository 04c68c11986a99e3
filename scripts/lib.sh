# Shared by the demo and test scripts: root check and a busybox root filesystem.

require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$0 runs real containers: run it as root" >&2
    exit 1
  fi
}

# find_cargo: puts rustup's cargo on PATH when it is not there yet (sudo's secure_path and bare CI
# environments leave out ~/.cargo/bin); fails with what to install when there is none.
find_cargo() {
  command -v cargo >/dev/null && return 0
  local bin=${CARGO_HOME:-${HOME:-/root}/.cargo}/bin
  if [ -x "$bin/cargo" ]; then
    export PATH=$bin:$PATH
    return 0
  fi
  echo "cargo is missing: install a Rust toolchain (1.85 or newer) with rustup" >&2
  return 1
}

# make_rootfs DIR: a busybox-static binary and one symlink per applet.
make_rootfs() {
  local rootfs=$1
  mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,etc,root}
  cp /bin/busybox "$rootfs/bin/busybox"
  local applet
  for applet in $("$rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
  echo "root:x:0:" >"$rootfs/etc/group"
}
