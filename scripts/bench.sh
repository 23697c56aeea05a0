#!/usr/bin/env bash
# Performance of slipway against the bare go builds it wraps, on the sample
# service (2 platforms). Numbers go to stdout; nothing here fails on a
# threshold (performance targets are reported, not asserted).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
bin=$root/bin/slipway
[ -x "$bin" ] || (cd "$root" && make -s build)
work=$(mktemp -d)
trap 'kill ${REGISTRY_PID:-0} 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r "$root/testdata/apps/hello" "$work/app"
cd "$work/app"
cat > slipway.yaml <<EOC
platforms: [linux/amd64, linux/arm64]
targets:
  - name: hello
    main: ./cmd/hello
EOC
export SOURCE_DATE_EPOCH=1700000000 GOFLAGS=-buildvcs=false
runs=${BENCH_RUNS:-3}

bare() { # both platforms in parallel, as slipway does (which does not pass GOEXPERIMENT on)
	env -u GOEXPERIMENT CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o "$work/b-amd64" ./cmd/hello &
	env -u GOEXPERIMENT CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags="-s -w" -o "$work/b-arm64" ./cmd/hello &
	wait
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== cold (fresh GOCACHE each run: the standard library is compiled too)"
for kind in bare slipway; do
	for i in $(seq "$runs"); do
		export GOCACHE=$work/cache-$kind-$i
		t=$(now)
		if [ $kind = bare ]; then bare; else "$bin" build -q --oci-layout "$work/oci" >/dev/null; fi
		elapsed "$t"
	done | median > "$work/cold-$kind"
done
unset GOCACHE
echo "go build x2: $(cat "$work/cold-bare")s  slipway build: $(cat "$work/cold-slipway")s  ratio: $(python3 -c "print('%.2f'%($(cat "$work/cold-slipway")/$(cat "$work/cold-bare")))")"

echo "== warm (one source line changed before each run)"
for kind in bare slipway; do
	for i in $(seq "$runs"); do
		sed -i "s/hello from %s/hello from %s $kind$i/" cmd/hello/main.go
		t=$(now)
		if [ $kind = bare ]; then bare; else "$bin" build -q --oci-layout "$work/oci" >/dev/null; fi
		elapsed "$t"
	done | median > "$work/warm-$kind"
done
echo "go build x2: $(cat "$work/warm-bare")s  slipway build: $(cat "$work/warm-slipway")s  ratio: $(python3 -c "print('%.2f'%($(cat "$work/warm-slipway")/$(cat "$work/warm-bare")))")"

echo "== push, then no-op rebuild + push (local docker-registry)"
start_registry "$work/registry"
t=$(now); "$bin" build -q --push --repository "$REGISTRY/bench" >/dev/null; echo "first build+push: $(elapsed "$t")s"
for i in $(seq "$runs"); do
	t=$(now); "$bin" build -q --push --repository "$REGISTRY/bench" >/dev/null; elapsed "$t"
done | median > "$work/noop"
echo "no-op rebuild+push: $(cat "$work/noop")s"

echo "== slipway run --push (build → scan → sign → push) vs the bare go builds"
(cd "$root" && go run ./internal/cmd/mkvulndb -o "$work/db" -fixtures testdata/vulndb >/dev/null)
COSIGN_PASSWORD=bench "$bin" keygen --output-key-prefix "$work/cosign" 2>/dev/null
cat > run.yaml <<EOC
repository: $REGISTRY/run
platforms: [linux/amd64, linux/arm64]
cache_dir: $work/run-cache
targets:
  - name: hello
    main: ./cmd/hello
scan:
  db: {dir: $work/db}
  cache_dir: $work/run-cache/layers
sign:
  key: $work/cosign.key
  attestations: [sbom, vuln, provenance]
EOC
export COSIGN_PASSWORD=bench
rss() { # peak RSS (MiB) of the command, via GNU time when present
	if [ -x /usr/bin/time ]; then /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1/1024}'; else "$@" >/dev/null 2>&1; echo "?"; fi
}
export GOCACHE=$work/cache-run-cold
t=$(now); "$bin" run -q -c run.yaml --push >/dev/null; echo "cold run: $(elapsed "$t")s (bare go builds cold: $(cat "$work/cold-bare")s)"
unset GOCACHE
for i in $(seq "$runs"); do
	sed -i "s/hello from %s/hello from %s run$i/" cmd/hello/main.go
	t=$(now); "$bin" run -q -c run.yaml --push >/dev/null; elapsed "$t"
done | median > "$work/warm-run"
echo "warm run after a one-line change: $(cat "$work/warm-run")s (bare go builds: $(cat "$work/warm-bare")s; overhead $(python3 -c "print('%+.0f%%'%(100*($(cat "$work/warm-run")/$(cat "$work/warm-bare")-1)))"))"
for i in $(seq "$runs"); do
	t=$(now); "$bin" run -q -c run.yaml --push >/dev/null; elapsed "$t"
done | median > "$work/noop-run"
echo "no-op rerun: $(cat "$work/noop-run")s"
echo "peak RSS of a no-op run: $(rss "$bin" run -q -c run.yaml --push) MiB"
sed -i "s/hello from %s/hello from %s rss/" cmd/hello/main.go
echo "peak RSS of a run with a rebuild and rescan: $(rss "$bin" run -q -c run.yaml --push) MiB"

echo "== image size"
"$bin" build -q --oci-layout "$work/size" >/dev/null
python3 - "$work/size" <<'EOP'
import json, os, sys
d = sys.argv[1]
blob = lambda h: os.path.join(d, "blobs", *h.split(":"))
idx = json.load(open(blob(json.load(open(os.path.join(d, "index.json")))["manifests"][0]["digest"])))
for m in idx["manifests"]:
    man = json.load(open(blob(m["digest"])))
    size = sum(l["size"] for l in man["layers"]) + man["config"]["size"]
    p = m["platform"]
    print(f'{p["os"]}/{p["architecture"]}: {size/1e6:.2f} MB compressed ({len(man["layers"])} layers)')
EOP
