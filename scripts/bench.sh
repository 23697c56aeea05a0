#!/usr/bin/env bash
# slipway side by side with the tools it replaces (issue #13), on one machine
# in one run: ko (build + push), Trivy (scan) and cosign v2 (sign), versions in
# scripts/bench-peers.txt and scripts/peers.txt, built once into
# ${SLIPWAY_PEERS:-$HOME/.cache/slipway/peers} by scripts/peers.sh.
#
# Every row pushes to Debian's docker-registry on loopback, with its access
# log on, onto a two-platform base image pushed there first; the scans use the
# fixture vulnerability DB of testdata/vulndb; signing uses a key. Nothing
# here contacts anything but loopback: HTTP(S)_PROXY point at a closed port
# (Go never proxies loopback) and GOPROXY=off once the peers are built.
#
# Each timing is the median of BENCH_RUNS (default 3) runs, slipway and its
# peer alternating, both on the same (warm) GOCACHE with their default
# parallelism. BENCH_ROWS picks rows (default: change noop mono startup
# size). The final table compares them with the issue's goals; a missed goal
# is reported, never a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
runs=${BENCH_RUNS:-3}
peers_dir=${SLIPWAY_PEERS:-$HOME/.cache/slipway/peers}
platforms=linux/amd64,linux/arm64

# ---------------------------------------------------------------- set-up

# peer NAME LIST: the binary scripts/peers.sh built for NAME of LIST.
peer() {
	local name=$1 list=$2 version pkg
	read -r version pkg < <(awk -v n="$name" '$1 == n { print $2, $4 }' "$list")
	[ -n "$version" ] || { echo "bench: $name is not in $list" >&2; return 1; }
	echo "$peers_dir/$name-$version/$(basename "$pkg")"
}

"$root/scripts/peers.sh" trivy cosign-v2
"$root/scripts/peers.sh" -f "$root/scripts/bench-peers.txt" ko
ko=$(peer ko "$root/scripts/bench-peers.txt")
trivy=$(peer trivy "$root/scripts/peers.txt")
cosign=$(peer cosign-v2 "$root/scripts/peers.txt")
bin=$root/bin/slipway
[ -x "$bin" ] || (cd "$root" && make -s build)

work=$(mktemp -d)
trap 'kill ${REGISTRY_PID:-0} 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$root" && go run ./internal/cmd/mkvulndb -o "$work/db" -fixtures testdata/vulndb >/dev/null)
COSIGN_PASSWORD=bench "$bin" keygen --output-key-prefix "$work/cosign" >/dev/null 2>&1

# Loopback only from here on.
export GOPROXY=off HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=
export SOURCE_DATE_EPOCH=1700000000 GOFLAGS=-buildvcs=false COSIGN_PASSWORD=bench

start_registry "$work/registry" accesslog

# requests: the registry API requests logged so far, one line each as
# "METHOD /v2/path-shape" (digests, upload ids and queries elided).
requests() {
	sleep 0.2 # the access log line is written after the response
	grep -oE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/[^ ]*' "$REGISTRY_LOG" |
		sed -E 's/^"//; s/\?.*//; s/sha256:[0-9a-f]{64}/sha256:…/g; s/sha256-[0-9a-f]{64}/sha256-…/g;
			s#/blobs/uploads/[^/]+$#/blobs/uploads/…#'
}
# count_requests FROM: how many requests after the first FROM.
count_requests() { requests | tail -n +$(($1 + 1)) | wc -l; }

# ok LOG CMD...: runs CMD with its output in LOG; on failure prints LOG and
# stops the bench. stdout is kept in LOG.out (for the references printed).
ok() {
	local log=$1
	shift
	if ! "$@" >"$log.out" 2>"$log"; then
		echo "bench: $* failed:" >&2
		cat "$log.out" "$log" >&2
		exit 1
	fi
}

# timed FILE CMD...: runs CMD (through ok) and appends its wall time to FILE.
timed() {
	local file=$1 t
	shift
	t=$(now)
	ok "$work/cmd.log" "$@"
	elapsed "$t" >> "$file"
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# result ROW SLIPWAY PEER RATIO GOAL MET: one line of the final table.
result() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$work/table"; }
# ratio A B: A/B with 2 decimals.
ratio() { python3 -c 'import sys;print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
# le X MAX: yes when X <= MAX, else no.
le() { python3 -c 'import sys;print("yes" if float(sys.argv[1]) <= float(sys.argv[2]) else "no")' "$1" "$2"; }

# ko: ko build with .ko.yaml in the working directory, images under
# KO_DOCKER_REPO/<last element of the import path>, its default SBOM on.
# go build runs without slipway's GOEXPERIMENT, as slipway's own go build
# does, so both share the same GOCACHE entries.
# Images go to $REGISTRY/ko-<app directory>/<name>.
ko_build() { env -u GOEXPERIMENT KO_DOCKER_REPO="$REGISTRY/ko-$(basename "$PWD")" "$ko" build -B "$@"; }
# trivy_scan REF: what slipway's scan does, with the Trivy CLI: one vuln scan
# per platform, offline on the fixture DB (Trivy's cache layout is the
# fixture dir: <dir>/db/trivy.db).
trivy_scan() {
	local p
	for p in ${platforms//,/ }; do
		"$trivy" image --quiet --image-src remote --platform "$p" --scanners vuln \
			--cache-dir "$work/db" --skip-db-update --skip-java-db-update --offline-scan \
			--skip-version-check --disable-telemetry --format json --output /dev/null "$1" || return 1
	done
}
# cosign_sign REF: a key signature on the index and every platform manifest
# (slipway signs the same ones), no transparency log.
cosign_sign() { "$cosign" sign --key "$work/cosign.key" --tlog-upload=false --recursive -y "$1"; }
# chain DIR PKG: the ko + Trivy + cosign chain that does what slipway run
# does; the ko build's own time goes to $work/ko-alone, its image to
# $work/chain.ref.
chain() {
	local ref t
	t=$(now)
	ok "$work/ko.log" ko_build "$2"
	elapsed "$t" >> "$work/ko-alone"
	ref=$(tail -1 "$work/ko.log.out")
	echo "$ref" > "$work/chain.ref"
	trivy_scan "$ref" && cosign_sign "$ref"
}

# ---------------------------------------------------------------- the apps

# The base: a tiny two-platform image built by slipway onto scratch, pushed
# as $REGISTRY/base/tiny:v1, the base of every image below (slipway's base:,
# ko's defaultBaseImage).
mkdir -p "$work/base/cmd/tiny"
cat > "$work/base/go.mod" <<'EOG'
module example.com/base

go 1.26
EOG
cat > "$work/base/cmd/tiny/main.go" <<'EOG'
package main

import "fmt"

func main() { fmt.Println("base") }
EOG
cat > "$work/base/slipway.yaml" <<EOC
platforms: [linux/amd64, linux/arm64]
base: scratch
repository: $REGISTRY/base
targets:
  - {name: tiny, main: ./cmd/tiny, tags: [v1]}
EOC
(cd "$work/base" && ok "$work/base.log" "$bin" build -q --push)
base=$REGISTRY/base/tiny:v1

# config DIR REPO TARGETS...: slipway.yaml (scan with the fixture DB, key
# signing, the three attestations) and .ko.yaml for the same build.
config() {
	local dir=$1 repo=$2 t
	shift 2
	{
		cat <<EOC
repository: $REGISTRY/$repo
platforms: [linux/amd64, linux/arm64]
base: $base
cache_dir: $dir/.slipway-cache
scan:
  db: {dir: $work/db}
  cache_dir: $dir/.slipway-cache/layers
sign:
  key: $work/cosign.key
  attestations: [sbom, vuln, provenance]
targets:
EOC
		for t in "$@"; do echo "  - {name: $t, main: ./cmd/$t}"; done
	} > "$dir/slipway.yaml"
	cat > "$dir/.ko.yaml" <<EOC
defaultBaseImage: $base
defaultPlatforms: [linux/amd64, linux/arm64]
defaultLdflags: ["-s", "-w"]
EOC
}

# The sample service.
cp -r "$root/testdata/apps/hello" "$work/app"
config "$work/app" run hello
# edit_hello TAG: a one-line change of the sample service.
edit_hello() { sed -i "s/hello from %s[^(]*(/hello from %s $1 (/" "$work/app/cmd/hello/main.go"; }

# The monorepo: 20 services sharing internal/shared (scripts/lib.sh).
mono=$work/mono
make_mono "$mono"
config "$mono" mono "${svcs[@]}"
svc_pkgs=("${svcs[@]/#/./cmd/}") # ko build takes one package an argument
# edit_shared TAG: a change of the package all 20 services import.
edit_shared() { sed -i "s/^const Banner = .*/const Banner = \"$1\"/" "$mono/internal/shared/shared.go"; }

# ---------------------------------------------------------------- the rows

echo "slipway $("$bin" version | head -1 | cut -d' ' -f2), ko $("$ko" version), trivy $("$trivy" --version | awk '/^Version/ {print $2}'), cosign $("$cosign" version 2>&1 | awk '/GitVersion/ {print $2}')"
echo "registry $REGISTRY, base $base, $runs runs a row, $(nproc) CPUs"

# Warm-up, not measured: both tools compile both platforms of the sample
# service into the shared GOCACHE, Trivy's and slipway's layer caches see
# the base, and both images exist (for the start-up row's verify).
echo "== warm-up"
(cd "$work/app" && ok "$work/w.log" "$bin" run -q --push && ok "$work/w.log" chain "$work/app" ./cmd/hello)

# Row change: a one-line change of the sample service, then the full
# pipeline: slipway run --push against ko build + trivy image (each
# platform) + cosign sign. Also against ko build alone (its time within the
# chain).
row_change() {
	echo "== one-line change: slipway run --push vs ko build + trivy image ×2 + cosign sign"
	cd "$work/app"
	: > "$work/ko-alone"
	for i in $(seq "$runs"); do
		edit_hello "s$i"
		timed "$work/change-slipway" "$bin" run -q --push
		edit_hello "k$i"
		timed "$work/change-chain" chain "$work/app" ./cmd/hello
	done
	local cs cc ck
	cs=$(median "$work/change-slipway") cc=$(median "$work/change-chain") ck=$(median "$work/ko-alone")
	echo "slipway ${cs}s  chain ${cc}s (ko build alone ${ck}s)"
	result "one-line change, run --push (s)" "$cs" "chain $cc" "$(ratio "$cs" "$cc")" "≤ 0.5× chain" "$(le "$(ratio "$cs" "$cc")" 0.5)"
	result "  … vs ko build alone (s)" "$cs" "ko $ck" "$(ratio "$cs" "$ck")" "≤ 1.1× ko" "$(le "$(ratio "$cs" "$ck")" 1.1)"
}

# Row noop: an unchanged rerun: slipway run --push (nothing to build, scan,
# sign or push) against a ko build rerun; time and registry requests, which
# are listed by method and path.
row_noop() {
	echo "== unchanged rerun: slipway run --push vs ko build"
	cd "$work/app"
	ok "$work/w.log" "$bin" run -q --push # the source may have changed since
	ok "$work/w.log" ko_build ./cmd/hello
	local n tool
	for i in $(seq "$runs"); do
		for tool in slipway ko; do
			n=$(requests | wc -l)
			if [ $tool = slipway ]; then
				timed "$work/noop-$tool" "$bin" run -q --push
			else
				timed "$work/noop-$tool" ko_build ./cmd/hello
			fi
			requests | tail -n +$((n + 1)) > "$work/noop-$tool-list"
			wc -l < "$work/noop-$tool-list" >> "$work/noop-$tool-req"
		done
	done
	local ns nk rs rk
	ns=$(median "$work/noop-slipway") nk=$(median "$work/noop-ko")
	rs=$(median "$work/noop-slipway-req") rk=$(median "$work/noop-ko-req")
	echo "slipway ${ns}s, $rs requests  ko ${nk}s, $rk requests"
	for tool in slipway ko; do
		echo "-- $tool's requests (last rerun), by method and path:"
		sort "$work/noop-$tool-list" | uniq -c | sort -rn | sed 's/^/  /'
	done
	result "unchanged rerun (s)" "$ns" "ko $nk" "$(ratio "$ns" "$nk")" "≤ 1.0× ko" "$(le "$(ratio "$ns" "$nk")" 1.0)"
	result "  … registry requests" "$rs" "ko $rk" "$(ratio "$rs" "$rk")" "≤ 16" "$(le "$rs" 16)"
}

# Row mono: 20 services × 2 platforms after a change of the package they
# share: slipway build --push against ko build of the 20 packages; slipway
# run --push (scan, sign and attest the 20 too) is reported beside it.
row_mono() {
	echo "== 20 targets × 2 platforms after a shared-package change: slipway build --push vs ko build of the 20"
	cd "$mono"
	ok "$work/w.log" "$bin" run -q --push # warm-up
	ok "$work/w.log" ko_build "${svc_pkgs[@]}"
	for i in $(seq "$runs"); do
		edit_shared "s$i"
		timed "$work/mono-slipway" "$bin" build -q --push
		edit_shared "k$i"
		timed "$work/mono-ko" ko_build "${svc_pkgs[@]}"
		edit_shared "r$i"
		timed "$work/mono-run" "$bin" run -q --push
	done
	local ms mk mr
	ms=$(median "$work/mono-slipway") mk=$(median "$work/mono-ko") mr=$(median "$work/mono-run")
	echo "slipway build ${ms}s (run ${mr}s)  ko ${mk}s"
	result "20 targets, build --push (s)" "$ms" "ko $mk" "$(ratio "$ms" "$mk")" "≤ 1.0× ko" "$(le "$(ratio "$ms" "$mk")" 1.0)"
	result "  … run --push (s)" "$mr" "ko $mk" "$(ratio "$mr" "$mk")" "(report)" "-"
}

# measure NAME CMD...: median wall time (s) and peak RSS (MiB, GNU time's
# %M) of CMD over the runs, in $NAME_t and $NAME_r.
measure() {
	local name=$1 i t r
	shift
	: > "$work/m-t"
	: > "$work/m-r"
	for i in $(seq "$runs"); do
		ok "$work/m.log" /usr/bin/time -f '%e %M' -o "$work/m.time" "$@"
		read -r t r < "$work/m.time"
		echo "$t" >> "$work/m-t"
		echo $((r / 1024)) >> "$work/m-r"
	done
	printf -v "${name}_t" %s "$(median "$work/m-t")"
	printf -v "${name}_r" %s "$(median "$work/m-r")"
}

# Row startup: wall time and peak RSS of commands that do not scan: --help,
# version and a key verify of the sample image: slipway verifies the image
# slipway run signed, cosign the one cosign signed in the chain (cosign v2
# needs a trusted root from TUF for slipway's bundles, which it cannot fetch
# offline: it then refuses). ko has no verify.
#
# Each tool runs from a copy made with install(1), as a package, a release
# download or a container image puts it. A binary the Go linker has just
# written is in the page cache as 2 MiB folios (it writes through mmap), and
# the kernel then maps its text with 2 MiB pages: every page touched counts
# 2 MiB of RSS. The same bytes copied with write(2) are mapped with 4 KiB
# pages. The row prints slipway's RSS in that state too (fresh link), for
# the record.
row_startup() {
	echo "== start-up: wall time and peak RSS"
	(cd "$work/app" && ok "$work/ref.log" "$bin" run -q --push --image-refs "$work/hello.refs")
	local ref cmd peer_col k_col sb kb cb
	ref=$(head -1 "$work/hello.refs")
	mkdir -p "$work/installed"
	sb=$work/installed/slipway kb=$work/installed/ko cb=$work/installed/cosign
	install -m 0755 "$bin" "$sb"
	install -m 0755 "$ko" "$kb"
	install -m 0755 "$cosign" "$cb"
	printf '  %-10s %-22s %-22s %-22s %s\n' command slipway ko cosign "slipway (fresh link)"
	for cmd in help version verify; do
		k_t=- k_r=-
		case $cmd in
		help | version)
			measure s "$sb" "${cmd/help/--help}"
			measure f "$bin" "${cmd/help/--help}"
			measure k "$kb" "${cmd/help/--help}"
			measure c "$cb" "${cmd/help/--help}"
			;;
		verify)
			measure s "$sb" verify --key "$work/cosign.pub" "$ref"
			measure f "$bin" verify --key "$work/cosign.pub" "$ref"
			measure c "$cb" verify --key "$work/cosign.pub" --insecure-ignore-tlog "$(cat "$work/chain.ref")"
			;;
		esac
		peer_col="cosign ${c_t}s ${c_r} MiB" k_col=-
		[ "$k_t" = - ] || k_col="${k_t}s ${k_r} MiB" peer_col="ko $k_col; $peer_col"
		printf '  %-10s %-22s %-22s %-22s %s\n' "$cmd" "${s_t}s ${s_r} MiB" "$k_col" "${c_t}s ${c_r} MiB" "${f_t}s ${f_r} MiB"
		result "$cmd: time, peak RSS" "${s_t}s ${s_r} MiB" "$peer_col" "$(ratio "$s_r" "$c_r") (RSS vs cosign)" "≤ 100 MB RSS" "$(le "$s_r" 100)"
		result "  … right after go build" "${f_t}s ${f_r} MiB" "-" "-" "(report)" "-"
	done
}

# Row size: slipway's stripped binary (make build: -s -w) against the peers'.
row_size() {
	local size
	size=$(stat -c %s "$bin")
	result "stripped binary size (bytes)" "$size" "ko $(stat -c %s "$ko"); cosign $(stat -c %s "$cosign")" "-" "≤ 150 MB" "$(le "$size" 150000000)"
}

# BENCH_ROWS picks rows (default: all, in this order).
for row in ${BENCH_ROWS:-change noop mono startup size}; do
	"row_$row"
done

# ---------------------------------------------------------------- summary

echo
echo "== summary (median of $runs runs; goals are reported, not enforced)"
python3 - "$work/table" <<'EOP'
import sys
head = ("row", "slipway", "peer", "ratio", "goal", "met")
rows = [head] + [tuple(l.rstrip("\n").split("\t")) for l in open(sys.argv[1])]
w = [max(len(r[i]) for r in rows) for i in range(len(head))]
for n, r in enumerate(rows):
    print("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
    if n == 0:
        print("|" + "|".join("-" * (x + 2) for x in w) + "|")
EOP
