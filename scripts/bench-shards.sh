#!/usr/bin/env bash
# The 20-target, 2-platform monorepo of scripts/bench.sh built on 1 runner
# (`slipway run --push`) and on N simulated runners (default 3): each runner
# a separate working copy with its own slipway caches, building a third of
# the targets for both platforms into an oci-archive (`slipway build TARGET…
# --oci-archive`), then a merge job (`slipway run --push --from …`) that
# scans, signs, attests and pushes. Runners run one after another on this
# machine; the figure for N runners is the slowest runner + the merge, the
# wall time a CI with N machines would see (downloads not counted).
#
# Both measurements follow a change of the package all 20 services import
# (committed: a merge needs a clean checkout), with cold slipway caches.
# GOCACHE: BENCH_GOCACHE=warm (default) shares this machine's warm Go build
# cache with every "runner" (a CI restoring it from its cache);
# BENCH_GOCACHE=cold gives each run an empty one (a CI without a Go cache:
# every runner compiles the standard library for both platforms).
# Loopback only: docker-registry on 127.0.0.1, the fixture vulnerability DB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
runners=${SHARD_RUNNERS:-3}
bin=${SLIPWAY_BIN:-$root/bin/slipway}
[ -x "$bin" ] || (cd "$root" && make -s build)

work=$(mktemp -d)
trap 'kill ${REGISTRY_PID:-0} 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$root" && go run ./internal/cmd/mkvulndb -o "$work/db" -fixtures testdata/vulndb >/dev/null)
export COSIGN_PASSWORD=bench GOPROXY=off HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=
"$bin" keygen --output-key-prefix "$work/cosign" >/dev/null 2>&1
start_registry "$work/registry"

# The monorepo of scripts/bench.sh (scripts/lib.sh): 20 services sharing internal/shared.
mono=$work/mono
make_mono "$mono"
{
	cat <<EOC
repository: $REGISTRY/mono
platforms: [linux/amd64, linux/arm64]
base: scratch
scan:
  db: {dir: $work/db}
sign:
  key: $work/cosign.key
  attestations: [sbom, vuln, provenance]
targets:
EOC
	for t in "${svcs[@]}"; do echo "  - {name: $t, main: ./cmd/$t}"; done
} > "$mono/slipway.yaml"
g() { git -C "$1" -c user.name=bench -c user.email=bench@example.com -c commit.gpgsign=false "${@:2}"; }
g "$mono" init -q && g "$mono" add -A && g "$mono" commit -qm v0
# commit_shared TAG: change the package all 20 import, and commit it.
commit_shared() {
	sed -i "s/^const Banner = .*/const Banner = \"$1\"/" "$mono/internal/shared/shared.go"
	g "$mono" commit -qam "$1"
}
# copy NAME: a fresh working copy (a runner's checkout).
copy() { rm -rf "$work/$1" && cp -a "$mono" "$work/$1" && echo "$work/$1"; }
# XDG_CACHE_HOME also moves Go's build cache unless GOCACHE is set.
warm_gocache=$(go env GOCACHE)
# timed DIR CMD…: runs CMD in DIR with fresh slipway caches; prints seconds.
timed() {
	local dir=$1 start cache gocache
	shift
	cache=$(mktemp -d "$work/cache.XXXX")
	gocache=$warm_gocache
	[ "${BENCH_GOCACHE:-warm}" = cold ] && gocache=$cache/go-build
	start=$(now)
	(cd "$dir" && XDG_CACHE_HOME=$cache GOCACHE=$gocache "$@" >"$work/out.log" 2>&1) ||
		{ cat "$work/out.log" >&2; return 1; }
	elapsed "$start"
}

echo "slipway $("$bin" version | head -1 | cut -d' ' -f2), $(nproc) CPUs, registry $REGISTRY"
# Warm-up (not measured): GOCACHE has both platforms.
timed "$(copy warm)" "$bin" build -q >/dev/null

commit_shared one
one=$(timed "$(copy one)" "$bin" run -q --push)
echo "1 runner: run --push ${one}s"

commit_shared shards
per=$(( (${#svcs[@]} + runners - 1) / runners ))
slowest=0 from=()
for r in $(seq 0 $((runners - 1))); do
	part=("${svcs[@]:$((r * per)):$per}")
	[ ${#part[@]} -gt 0 ] || continue
	s=$(timed "$(copy runner$r)" "$bin" build -q "${part[@]}" --oci-archive "$work/shard$r.tar")
	echo "runner $r: build ${part[0]}…${part[-1]} (${#part[@]} targets × 2 platforms) ${s}s"
	slowest=$(python3 -c "import sys;print(max(float(sys.argv[1]),float(sys.argv[2])))" "$slowest" "$s")
	from+=(--from "oci-archive:$work/shard$r.tar")
done
merge=$(timed "$(copy merge)" "$bin" run -q --push "${from[@]}")
total=$(python3 -c "import sys;print('%.3f'%(float(sys.argv[1])+float(sys.argv[2])))" "$slowest" "$merge")
echo "merge: run --push --from ×$runners ${merge}s"
echo
printf '%-28s %10s\n' "setup" "wall (s)"
printf '%-28s %10s\n' "1 runner (run --push)" "$one"
printf '%-28s %10s\n' "$runners runners: slowest build" "$slowest"
printf '%-28s %10s\n' "  + merge (scan/sign/push)" "$merge"
printf '%-28s %10s\n' "  = total" "$total"
