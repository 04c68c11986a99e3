#!/bin/bash
# Fetches, verifies and builds the OCI runtime-tools validation suite from Debian's source
# package, then prints the directory holding the built suite (validation/*.t, runtimetest,
# rootfs-amd64.tar.gz) as the last line of stdout.
#
# Trust chain: the mirror comes from this machine's apt sources; the suite's InRelease must carry
# a good signature from the Debian archive keyring (gpgv), the Sources index must match the
# SHA256 the signed Release lists, and the .dsc and orig tarball must match the SHA256 the
# Sources entry lists. Nothing is cloned; no host name is written here.
#
# The verified tarball and the build are cached under $CACHE (default
# $XDG_CACHE_HOME/cdirun-conformance or /var/cache/cdirun-conformance); a later run reuses them
# without touching the network (--refresh looks for a newer upload).
#
# Usage: fetch-suite.sh [--refresh]
# Environment: CONFORMANCE_CACHE (cache dir), CONFORMANCE_SUITES (Debian suites to look in,
# default "trixie sid"), CONFORMANCE_KEYRING (default the Debian archive keyring).
set -euo pipefail

readonly PACKAGE=golang-github-opencontainers-runtime-tools
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly CACHE=${CONFORMANCE_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/cdirun-conformance}}
readonly CACHE_DIR=${CACHE:-/var/cache/cdirun-conformance}
readonly SUITES=${CONFORMANCE_SUITES:-trixie sid}
readonly KEYRING=${CONFORMANCE_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

# Debian packages the fetch and the offline Go build need (the suite's Go dependencies included).
readonly BUILD_PACKAGES=(
	ca-certificates curl xz-utils gpgv debian-archive-keyring
	golang-go golang-github-google-uuid-dev golang-github-blang-semver-dev
	golang-github-hashicorp-go-multierror-dev golang-github-mrunalp-fileutils-dev
	golang-github-opencontainers-specs-dev golang-github-opencontainers-selinux-dev
	golang-github-sirupsen-logrus-dev golang-github-urfave-cli-dev
	golang-github-xeipuuv-gojsonschema-dev golang-gocapability-dev golang-golang-x-sys-dev
)

refresh=false
case ${1:-} in
--refresh) refresh=true ;;
"") ;;
*)
	echo "usage: $0 [--refresh]" >&2
	exit 2
	;;
esac

log() { echo "fetch-suite: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Installs whichever build packages are missing (apt-get update only when something is).
install_packages() {
	local missing=() pkg
	for pkg in "${BUILD_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return
	log "installing ${missing[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >&2
}

# Prints the archive base URIs of the machine's apt sources, in order, without duplicates: the
# one-line format (sources.list, *.list) and deb822 (*.sources, skipping "Enabled: no").
apt_mirrors() {
	local f
	{
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[[ -f $f ]] || continue
			sed -e 's/#.*//' "$f" | awk '
				$1 == "deb" || $1 == "deb-src" {
					i = 2
					if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
					print $i
				}'
		done
		for f in /etc/apt/sources.list.d/*.sources; do
			[[ -f $f ]] || continue
			awk 'BEGIN { RS = ""; FS = "\n" }
				{
					enabled = 1; uris = ""
					for (i = 1; i <= NF; i++) {
						line = $i
						if (line ~ /^#/) continue
						key = tolower(line); sub(/:.*/, "", key)
						sub(/^[^:]*:[ \t]*/, "", line)
						if (key == "enabled" && tolower(line) == "no") enabled = 0
						if (key == "uris") uris = line
					}
					if (enabled && uris != "") {
						n = split(uris, u, /[ \t]+/)
						for (j = 1; j <= n; j++) print u[j]
					}
				}' "$f"
		done
	} | grep -E '^(https?|ftp)://' | sed -e 's:/*$::' | awk '!seen[$0]++'
}

fetch() { curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1"; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Reads one stanza field (single-line value) from a deb822 stanza on stdin.
field() { awk -v key="$1" 'tolower($0) ~ "^" tolower(key) ":" { sub(/^[^:]*:[ \t]*/, ""); print; exit }'; }

# Prints "sha256 size name" lines of a multi-line checksum field of a stanza on stdin.
checksums() {
	awk -v key="$1" '
		/^[^ \t]/ { on = (tolower($0) ~ "^" tolower(key) ":") ; next }
		on && NF == 3 { print $1, $2, $3 }'
}

# Finds the package in one suite of one mirror and downloads its verified source files into
# $tmp. On success sets VERSION, ORIG (file name), ORIG_SHA256; returns non-zero to try the next.
try_source() {
	local mirror=$1 suite=$2 index path sum size name dir
	rm -rf "${tmp:?}"/*
	fetch "$mirror/dists/$suite/InRelease" "$tmp/InRelease" 2>/dev/null || return 1
	# gpgv writes only the signed content to --output, so nothing outside the signature is read.
	gpgv --keyring "$KEYRING" --output "$tmp/Release" "$tmp/InRelease" 2>"$tmp/gpgv.log" || {
		log "$suite at a configured mirror: bad or unknown signature, skipped"
		return 1
	}
	for index in main/source/Sources.xz main/source/Sources.gz; do
		read -r sum size < <(awk -v name="$index" '
			/^SHA256:/ { on = 1; next } /^[^ ]/ { on = 0 }
			on && $3 == name { print $1, $2 }' "$tmp/Release") || continue
		path=$index
		# by-hash names the exact index the signed Release lists, immune to a mirror update
		# landing between the two downloads.
		if grep -qi '^Acquire-By-Hash: *yes' "$tmp/Release"; then
			path="${index%/*}/by-hash/SHA256/$sum"
		fi
		fetch "$mirror/dists/$suite/$path" "$tmp/Sources.idx" ||
			fetch "$mirror/dists/$suite/$index" "$tmp/Sources.idx" || continue
		[[ $(stat -c %s "$tmp/Sources.idx") == "$size" && $(sha256_of "$tmp/Sources.idx") == "$sum" ]] ||
			die "$suite $index: size or SHA256 differs from the signed Release"
		break
	done
	[[ -s $tmp/Sources.idx ]] || return 1
	# The package's stanza: blank-line separated, "Package:" exact.
	xz -dcf "$tmp/Sources.idx" 2>/dev/null | gzip -dcf | awk -v pkg="$PACKAGE" '
		BEGIN { RS = ""; ORS = "\n\n" } $0 ~ "(^|\n)Package: " pkg "\n" { print; exit }' \
		>"$tmp/stanza"
	[[ -s $tmp/stanza ]] || return 1
	VERSION=$(field Version <"$tmp/stanza")
	dir=$(field Directory <"$tmp/stanza")
	ORIG=
	while read -r sum _ name; do
		case $name in
		*.orig.tar.*) fetch "$mirror/$dir/$name" "$tmp/$name" || die "cannot download $name" ;;
		# The .dsc is only a record (the orig tarball's hash comes from the same signed
		# Sources entry); some mirrors and caches do not serve it.
		*.dsc) fetch "$mirror/$dir/$name" "$tmp/$name" 2>/dev/null || continue ;;
		*) continue ;;
		esac
		[[ $(sha256_of "$tmp/$name") == "$sum" ]] || die "$name: SHA256 mismatch"
		[[ $name == *.orig.tar.* ]] && ORIG=$name ORIG_SHA256=$sum
	done < <(checksums Checksums-Sha256 <"$tmp/stanza")
	[[ -n $ORIG ]] || die "$suite: no orig tarball listed for $PACKAGE"
	log "verified $PACKAGE $VERSION ($suite): $ORIG sha256 $ORIG_SHA256"
}

# Downloads the verified source into the cache and records it in $CACHE_DIR/source.env.
download() {
	local mirror suite
	tmp=$(mktemp -d "$CACHE_DIR/tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	for suite in $SUITES; do
		while read -r mirror; do
			if try_source "$mirror" "$suite"; then
				mkdir -p "$CACHE_DIR/sources"
				mv "$tmp/$ORIG" "$CACHE_DIR/sources/$ORIG"
				mv "$tmp"/*.dsc "$CACHE_DIR/sources/" 2>/dev/null || true
				printf 'VERSION=%q\nORIG=%q\nORIG_SHA256=%q\n' "$VERSION" "$ORIG" "$ORIG_SHA256" \
					>"$CACHE_DIR/source.env"
				return
			fi
		done < <(apt_mirrors)
	done
	die "$PACKAGE not found in suites ($SUITES) of the configured apt mirrors"
}

# Builds runtimetest and the validation programs offline against Debian's Go packages, with
# our tap-go stand-in; the build dir is keyed by the tarball and the stand-in's contents.
build() {
	local key out gopath src
	key=$(cat "$CACHE_DIR/sources/$ORIG" "$HERE/tap-go/tap.go" | sha256sum | cut -c1-16)
	out=$CACHE_DIR/build/$key
	if [[ -f $out/.built ]]; then
		echo "$out/suite"
		return
	fi
	log "building the suite in $out"
	rm -rf "$out"
	gopath=$out/gopath
	src=$gopath/src/github.com/opencontainers/runtime-tools
	mkdir -p "$src" "$gopath/src/github.com/mndrix/tap-go" "$out/suite/validation"
	tar -xf "$CACHE_DIR/sources/$ORIG" -C "$src" --strip-components=1
	cp "$HERE/tap-go/tap.go" "$gopath/src/github.com/mndrix/tap-go/"
	(
		cd "$src"
		export GO111MODULE=off GOPROXY=off GOFLAGS="" CGO_ENABLED=0
		export GOPATH=$gopath:/usr/share/gocode GOCACHE=$CACHE_DIR/go-build
		# Static like the upstream Makefile's runtimetest (it runs inside the container).
		go build -tags "netgo osusergo" -o "$out/suite/runtimetest" ./cmd/runtimetest
		# shellcheck disable=SC2016 # $0 and $f are the inner sh's
		find validation -mindepth 2 -maxdepth 2 -name '*.go' ! -path 'validation/util/*' |
			sort | xargs -P "$(nproc)" -I{} sh -c \
			'f={}; go build -o "$0/$(basename "${f%.go}").t" "./$(dirname "$f")"' \
			"$out/suite/validation"
		cp rootfs-amd64.tar.gz "$out/suite/"
	) >&2
	[[ $(find "$out/suite/validation" -name '*.t' | wc -l) -gt 0 ]] || die "no programs built"
	touch "$out/.built"
	echo "$out/suite"
}

main() {
	mkdir -p "$CACHE_DIR"
	install_packages
	if $refresh || [[ ! -f $CACHE_DIR/source.env ]]; then
		download
	fi
	# shellcheck source=/dev/null
	. "$CACHE_DIR/source.env"
	[[ -f $CACHE_DIR/sources/$ORIG && $(sha256_of "$CACHE_DIR/sources/$ORIG") == "$ORIG_SHA256" ]] ||
		{ rm -f "$CACHE_DIR/source.env" && die "cached $ORIG is damaged; run again"; }
	build
}

main
