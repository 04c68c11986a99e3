#!/bin/bash
# Runs the OCI runtime-tools validation suite (58 programs) against cdirun and, with --compare,
# against runc and crun in the same run, judges each program, writes a markdown results table
# and prints cdirun's "N passed, N failed, N skipped" as the last line: a failure listed in
# conformance/expected-failures (with its reason) counts as skipped, any other as failed.
#
# Exit status: 0 when every cdirun failure is listed in conformance/expected-failures, 1 when
# one is not (a regression), 2 on a usage or setup error. A listed program that now passes is
# reported (unless listed as flaky) but does not fail the run.
#
# Usage: conformance/runtime-tools.sh [options] [program...]
#   --compare         also run runc and crun (slower; for the comparison table)
#   --cdirun PATH     the cdirun binary (default: target/release/cdirun of this checkout)
#   --results FILE    where the table goes (default: $CACHE_DIR/results.md)
#   --timeout SECS    per-program time limit (default 90)
#   --refresh         look for a newer suite upload in the apt mirror
#   program...        run only these programs (names as in validation/, e.g. delete poststart)
#
# Isolation: every program runs inside `unshare -m` (a private mount namespace: linux_ns_itype
# runs a container without namespaces, whose proc/sys/dev mounts would otherwise land on the
# host) under a time limit. Each runtime gets its own --root, temp dir and (cdirun) state dir
# under a private work dir, so containers of other users of these runtimes are never touched.
# After each program its leftover containers are force-deleted, its bundles removed, and the
# suite's cgroups (cgrouptest, testdir and container-id directories it created) removed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
readonly HERE REPO
readonly CACHE=${CONFORMANCE_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/cdirun-conformance}}
readonly CACHE_DIR=${CACHE:-/var/cache/cdirun-conformance}
readonly EXPECTED=$HERE/expected-failures
readonly CGROUP_ROOT=/sys/fs/cgroup

runtimes=(cdirun)
cdirun=$REPO/target/release/cdirun
results=$CACHE_DIR/results.md
timeout_secs=90
fetch_args=()
only=()

usage() {
	sed -n '/^# Usage:/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while (($#)); do
	case $1 in
	--compare) runtimes=(cdirun runc crun) ;;
	--cdirun) cdirun=${2:?} && shift ;;
	--results) results=${2:?} && shift ;;
	--timeout) timeout_secs=${2:?} && shift ;;
	--refresh) fetch_args+=(--refresh) ;;
	-h | --help) usage ;;
	-*) usage ;;
	*) only+=("$1") ;;
	esac
	shift
done

log() { echo "conformance: $*" >&2; }
die() {
	log "error: $*"
	exit 2
}

((EUID == 0)) || die "run as root (the suite creates real containers)"
command -v unshare >/dev/null || die "unshare (util-linux) is missing"
[[ -x $cdirun ]] || die "no cdirun binary at $cdirun (cargo build --release, or --cdirun PATH)"
cdirun=$(realpath "$cdirun")
for rt in "${runtimes[@]}"; do
	[[ $rt == cdirun ]] || command -v "$rt" >/dev/null || die "$rt is not installed"
done

suite=$("$HERE/fetch-suite.sh" "${fetch_args[@]}" | tail -n1) || die "cannot fetch or build the suite"
[[ -d $suite/validation ]] || die "no suite at $suite"

# A private work dir: per-runtime roots, bundles, wrappers, cdirun's config and state.
work=$(mktemp -d /tmp/cdirun-conformance.XXXXXX)
# Searchable by all: a container with a user namespace reaches its bundle (below here) as a
# mapped, unprivileged host uid.
chmod 755 "$work"
logs=$CACHE_DIR/logs
rm -rf "$logs"

# Snapshot of the cgroup directories before the run: only directories that appear during it
# and are named like the suite's (cgrouptest, testdir, a container's UUID) are removed.
cgroup_snapshot() { find "$CGROUP_ROOT" -mindepth 1 -maxdepth 6 -type d 2>/dev/null | sort; }
cgroup_before=$work/cgroups.before
cgroup_snapshot >"$cgroup_before"

readonly UUID_RE='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'

# Removes one cgroup directory tree the suite made: thaw, kill what is left inside, rmdir
# deepest first.
remove_cgroup_tree() {
	local dir sub pid
	dir=$1
	while read -r sub; do
		[[ -w $sub/freezer.state ]] && echo THAWED >"$sub/freezer.state" 2>/dev/null
		if [[ -w $sub/cgroup.kill ]]; then
			echo 1 >"$sub/cgroup.kill" 2>/dev/null
		elif [[ -r $sub/cgroup.procs ]]; then
			while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$sub/cgroup.procs"
		fi
	done < <(find "$dir" -type d 2>/dev/null)
	for _ in 1 2 3 4 5; do
		find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
		[[ -d $dir ]] || return 0
		sleep 0.2
	done
	log "warning: cannot remove cgroup $dir"
}

cleanup_cgroups() {
	local dir
	while read -r dir; do
		[[ -d $dir ]] || continue
		case ${dir##*/} in
		cgrouptest | testdir) remove_cgroup_tree "$dir" ;;
		*) [[ ${dir##*/} =~ ^$UUID_RE$ ]] && remove_cgroup_tree "$dir" ;;
		esac
	done < <(comm -13 "$cgroup_before" <(cgroup_snapshot))
}

# Force-deletes every container left in a runtime's private root (a program that failed or
# timed out), then removes the bundles it left in its temp dir.
cleanup_runtime() {
	local rt=$1 dir id
	for dir in "$work/root/$rt"/*/; do
		[[ -d $dir ]] || continue
		id=$(basename "$dir")
		timeout -k 5 30 "$work/bin/$rt" delete --force "$id" >/dev/null 2>&1 ||
			log "warning: $rt delete --force $id failed"
		rm -rf "${work:?}/root/$rt/$id"
	done
	rm -rf "${work:?}/tmp/$rt"/*
}

cleanup_all() {
	local rt
	for rt in "${runtimes[@]}"; do cleanup_runtime "$rt"; done
	cleanup_cgroups
	rm -rf "$work"
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

# RUNTIME for the suite: a wrapper giving the runtime its private --root.
setup_runtime() {
	local rt=$1 bin
	bin=$(command -v "$rt")
	[[ $rt == cdirun ]] && bin=$cdirun
	mkdir -p "$work/bin" "$work/root/$rt" "$work/tmp/$rt" "$logs/$rt"
	chmod 755 "$work/bin" "$work/root" "$work/root/$rt" "$work/tmp" "$work/tmp/$rt"
	printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$bin" "$work/root/$rt" >"$work/bin/$rt"
	chmod +x "$work/bin/$rt"
}

# cdirun's config: the suite checks absolute cgroupsPath values literally, so /cgrouptest is
# used as given (cdirun nests any other path under its owned slice); claims stay in the work dir.
cat >"$work/cdirun.toml" <<EOF
state-dir = "$work/cdirun-state"
[slices]
respect = ["/cgrouptest"]
EOF

# Runs one program for one runtime; its TAP goes to $logs/<rt>/<prog>.out, stderr to .err and
# the exit status to .rc.
run_program() {
	local rt=$1 prog=$2 out=$logs/$1/$2 prelude=
	# crun picks cgroup v2 when /sys/fs/cgroup/unified is mounted; on this hybrid layout its
	# resources live in v1, so it runs with that mount hidden (in the private namespace only)
	# under a throwaway tmpfs: what crun writes there must not land on the host's
	# /sys/fs/cgroup tmpfs, which an unmounted mount point would expose.
	[[ $rt == crun ]] &&
		prelude='umount -l /sys/fs/cgroup/unified 2>/dev/null; mount -t tmpfs -o size=1m hidden /sys/fs/cgroup/unified;'
	(
		cd "$suite" || exit 2
		export RUNTIME=$work/bin/$rt TMPDIR=$work/tmp/$rt CDIRUN_CONFIG=$work/cdirun.toml
		exec timeout -k 10 "$timeout_secs" \
			unshare --mount --propagation private \
			sh -c "$prelude exec ./validation/$prog.t" </dev/null >"$out.out" 2>"$out.err"
	)
	echo $? >"$out.rc"
	cleanup_runtime "$rt"
	cleanup_cgroups
}

# An error reported on the TAP stream: a YAML "error" with a message, or a "# " diagnostic
# naming an error.
readonly ERROR_DIAGNOSTIC='^  *"error": "[^"]|^# .*[Ee]rror'

# Judges one program's output. Prints "pass|fail<TAB>ok<TAB>notok<TAB>skip<TAB>reason" (ok
# counts test points that passed without being skipped).
# Failed: non-zero exit, any "not ok", fewer test points than planned, or no test point at all
# while the program reported an error.
judge() {
	local out=$1.out err=$1.err rc plan count notok skip reason=
	rc=$(cat "$1.rc")
	plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$out" | cut -d. -f3)
	count=$(grep -cE '^(not )?ok\b' "$out")
	notok=$(grep -cE '^not ok\b' "$out")
	skip=$(grep -cE '^ok [0-9]+ # SKIP' "$out")
	if ((rc == 124 || rc == 137)); then
		reason="timed out after ${timeout_secs}s"
	elif ((rc != 0)); then
		reason="exit $rc: $(grep -v '^\s*$' "$err" | tail -n1)"
	elif ((notok > 0)); then
		reason=$(grep -E '^not ok\b' "$out" | head -n2 | sed -E 's/^not ok [0-9]+ - //' |
			paste -sd ';' -)
	elif [[ -n $plan ]] && ((count < plan)); then
		reason="planned $plan test points, ran $count"
	elif ((count == 0)) && grep -qE "$ERROR_DIAGNOSTIC" "$out"; then
		# Negative programs (a hook or limit that must fail) report only this way; stderr is
		# not looked at, since a passing negative program shows the runtime's refusal there.
		reason="no test point but an error: $(grep -hE "$ERROR_DIAGNOSTIC" "$out" | tail -n1 |
			sed -E 's/^[# ]*("error": )?//')"
	fi
	reason=${reason//|/\\|}
	reason=${reason:0:200}
	printf '%s\t%s\t%s\t%s\t%s\n' "$([[ -z $reason ]] && echo pass || echo fail)" \
		$((count - notok - skip)) "$notok" "$skip" "$reason"
}

# Expected cdirun failures: "program<whitespace>category<whitespace>reason".
declare -A expected_category expected_reason
while read -r prog category reason; do
	[[ -z $prog || $prog == \#* ]] && continue
	expected_category[$prog]=$category
	expected_reason[$prog]=$reason
done <"$EXPECTED"

mapfile -t programs < <(find "$suite/validation" -name '*.t' -printf '%f\n' | sed 's/\.t$//' | sort)
if ((${#only[@]})); then
	for prog in "${only[@]}"; do
		[[ -x $suite/validation/$prog.t ]] || die "no program $prog in the suite"
	done
	programs=("${only[@]}")
fi

declare -A verdict detail
declare -A passed_n failed_n ok_n notok_n skip_n
start=$SECONDS
for rt in "${runtimes[@]}"; do
	setup_runtime "$rt"
	passed_n[$rt]=0 failed_n[$rt]=0 ok_n[$rt]=0 notok_n[$rt]=0 skip_n[$rt]=0
	for prog in "${programs[@]}"; do
		run_program "$rt" "$prog"
		IFS=$'\t' read -r v ok notok skip reason < <(judge "$logs/$rt/$prog")
		verdict[$rt,$prog]=$v
		detail[$rt,$prog]=$reason
		((ok_n[$rt] += ok, notok_n[$rt] += notok, skip_n[$rt] += skip))
		if [[ $v == pass ]]; then ((passed_n[$rt]++)); else ((failed_n[$rt]++)); fi
		log "$rt $prog: $v${reason:+ ($reason)}"
	done
done
elapsed=$((SECONDS - start))

# Classifies cdirun's results against the expected list.
unexpected=() fixed=()
for prog in "${programs[@]}"; do
	if [[ ${verdict[cdirun,$prog]} == fail && -z ${expected_category[$prog]:-} ]]; then
		unexpected+=("$prog")
	elif [[ ${verdict[cdirun,$prog]} == pass && -n ${expected_category[$prog]:-} &&
		${expected_category[$prog]} != flaky ]]; then
		fixed+=("$prog")
	fi
done

mkdir -p "$(dirname "$results")"
{
	echo "# OCI runtime-tools validation results"
	echo
	echo "Suite: $(basename "$(dirname "$suite")") built from Debian's" \
		"golang-github-opencontainers-runtime-tools source; ${#programs[@]} programs, ${elapsed}s."
	echo
	printf '| program |'
	for rt in "${runtimes[@]}"; do printf ' %s |' "$rt"; done
	echo ' cdirun failure reason |'
	printf '|---|'
	for rt in "${runtimes[@]}"; do printf -- '---|'; done
	echo '---|'
	for prog in "${programs[@]}"; do
		printf '| %s |' "$prog"
		for rt in "${runtimes[@]}"; do printf ' %s |' "${verdict[$rt,$prog]}"; done
		why=
		if [[ ${verdict[cdirun,$prog]} == fail ]]; then
			if [[ -n ${expected_category[$prog]:-} ]]; then
				why="${expected_category[$prog]}: ${expected_reason[$prog]}"
			else
				why="UNEXPECTED: ${detail[cdirun,$prog]}"
			fi
		fi
		echo " ${why//|/\\|} |"
	done
	echo
	echo '| runtime | programs passed | failed | TAP ok | not ok | skip |'
	echo '|---|---|---|---|---|---|'
	for rt in "${runtimes[@]}"; do
		echo "| $rt | ${passed_n[$rt]} | ${failed_n[$rt]} | ${ok_n[$rt]} | ${notok_n[$rt]} | ${skip_n[$rt]} |"
	done
} >"$results"

for rt in "${runtimes[@]}"; do
	log "$rt: ${passed_n[$rt]} passed, ${failed_n[$rt]} failed (TAP ok ${ok_n[$rt]}," \
		"not ok ${notok_n[$rt]}, skip ${skip_n[$rt]})"
done
for prog in "${fixed[@]}"; do
	log "note: $prog now passes with cdirun; remove it from $EXPECTED"
done
for prog in "${unexpected[@]}"; do
	log "UNEXPECTED cdirun failure: $prog (${detail[cdirun,$prog]}); output in $logs/cdirun/$prog.*"
done
log "results table: $results; TAP output: $logs (${elapsed}s)"
listed=$((failed_n[cdirun] - ${#unexpected[@]}))
log "cdirun: $listed failures are listed in $EXPECTED with their reasons: counted as skipped"
echo "${passed_n[cdirun]} passed, ${#unexpected[@]} failed, $listed skipped"
((${#unexpected[@]} == 0))
