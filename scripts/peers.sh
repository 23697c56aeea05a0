#!/usr/bin/env bash
# Builds the peer tools listed in scripts/peers.txt that are not built yet,
# one at a time, into ${SLIPWAY_PEERS:-$HOME/.cache/slipway/peers}/<name>-<version>/.
# Each peer is built in a temporary directory beside its final one and renamed
# into place, so an interrupted build never leaves a half binary behind.
# Usage: scripts/peers.sh [-f LIST] [name...]   (default: every peer of
# scripts/peers.txt; -f reads another list of the same format, e.g.
# scripts/bench-peers.txt)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
list=$here/peers.txt
if [ "${1:-}" = -f ]; then
	list=${2:?peers.sh: -f needs a list file}
	shift 2
fi
root=${SLIPWAY_PEERS:-$HOME/.cache/slipway/peers}
mkdir -p "$root"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOEXPERIMENT=jsonv2
# build_peer NAME VERSION HOW TARGET PKG [-X VALUE...]: builds into $tmp/bin.
build_peer() {
	local name=$1 version=$2 how=$3 target=$4 pkg=$5
	shift 5
	local ldflags="-s -w" x
	for x in "$@"; do ldflags+=" -X ${x//\{v\}/${version#v}}"; done
	local flags=(-trimpath "-ldflags=$ldflags")
	case $how in
	install)
		GOBIN=$tmp/bin nice -n 10 go install "${flags[@]}" "$target@$version"
		;;
	tool)
		# A tool directive of slipway's own go.mod pins the version
		# (checked below); built in slipway's module, with the settings
		# `go test` uses (no -trimpath, the default CGO_ENABLED), so every
		# package slipway's own build compiles is compiled once.
		local pinned
		pinned=$(cd "$here/.." && go list -m -f '{{.Version}}' "$(cd "$here/.." && go list -f '{{.Module.Path}}' "$target")") || return 1
		if [ "$pinned" != "$version" ]; then
			echo "peers.txt: $name: go.mod pins $pinned, peers.txt says $version" >&2
			return 1
		fi
		mkdir -p "$tmp/bin" || return 1
		(cd "$here/.." && env -u CGO_ENABLED nice -n 10 go build "-ldflags=$ldflags" -o "$tmp/bin/$(basename "$target")" "$target")
		;;
	source)
		# go install refuses modules whose go.mod has replace directives:
		# build the package in a writable copy of the module source.
		local dir
		dir=$(cd "$tmp" && go mod download -json "$target@$version" |
			python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])') || return 1
		cp -r "$dir" "$tmp/src" || return 1
		chmod -R u+w "$tmp/src" || return 1
		mkdir -p "$tmp/bin" || return 1
		# -mod=mod: the module's go.sum need not cover every package built.
		(cd "$tmp/src" && GOFLAGS="-mod=mod -buildvcs=false" nice -n 10 \
			go build "${flags[@]}" -o "$tmp/bin/$(basename "$pkg")" "$pkg")
		;;
	*)
		echo "peers.txt: $name: unknown method $how" >&2
		return 1
		;;
	esac
}

status=0
while read -r name version how target rest; do
	case $name in '' | '#'*) continue ;; esac
	# rest: [./package (source only)] [-X value...]
	read -r -a extra <<<"${rest:-}"
	pkg=
	if [ "$how" = source ]; then
		pkg=${extra[0]:-}
		extra=("${extra[@]:1}")
	fi
	if [ $# -gt 0 ]; then
		found=
		for a in "$@"; do [ "$a" = "$name" ] && found=1; done
		[ -n "$found" ] || continue
	fi
	if [ "$how" = source ]; then bin=$(basename "$pkg"); else bin=$(basename "$target"); fi
	final=$root/$name-$version
	if [ -x "$final/$bin" ]; then
		continue
	fi
	tmp=$(mktemp -d "$root/.build-$name-$version.XXXXXX")
	start=$(date +%s)
	echo "peers: building $name $version" >&2
	# The CPU time (user+sys, of every process the build ran) tells what a
	# build costs on a machine of its own: about CPU/cores of wall time.
	TIMEFORMAT="peers: $name $version: %0R s wall, %0U s user, %0S s sys"
	if time build_peer "$name" "$version" "$how" "$target" "$pkg" "${extra[@]}" </dev/null && [ -x "$tmp/bin/$bin" ]; then
		rm -rf "$final"
		mv "$tmp/bin" "$final"
		echo "peers: $name $version built in $(($(date +%s) - start))s ($(du -h "$final/$bin" | cut -f1))" >&2
	else
		echo "peers: $name $version FAILED after $(($(date +%s) - start))s" >&2
		status=1
	fi
	rm -rf "$tmp"
done < "$list"
exit $status
