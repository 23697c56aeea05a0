# slipway — see README.md. Trivy needs encoding/json/v2: every go command
# here runs with GOEXPERIMENT=jsonv2.
export GOEXPERIMENT := jsonv2
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
BIN     := bin/slipway
# Debian packages the tests run against.
DEB_PKGS := docker-registry umoci runc redis-server
DEB_BINS := /usr/bin/docker-registry /usr/bin/umoci /usr/sbin/runc /usr/bin/redis-server

.PHONY: all build deps peers demo test test-unit test-short bench fuzz vet fmt clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags kustomize_disable_go_plugin_support -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/slipway

# Installs the Debian packages the tests need, when any is missing.
deps:
	@missing=""; for b in $(DEB_BINS); do [ -x $$b ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing $(DEB_PKGS)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PKGS) >/dev/null; \
	fi

# Builds the peer tools the tests run against (cosign v3 and v2, Fulcio, the
# timestamp authority, policy-controller's tester, Trivy; versions in
# scripts/peers.txt) once, into ${SLIPWAY_PEERS:-$HOME/.cache/slipway/peers}.
peers:
	@scripts/peers.sh

# Builds, scans (with the fixture vulnerability DB from testdata), signs
# (with a demo key generated here) and writes the sample service to
# dist/oci. No registry and no network needed.
demo: build
	@scripts/demo.sh

# The whole suite: unit, integration (docker-registry, umoci, runc) and e2e.
test: deps peers
	SLIPWAY_REQUIRE_TOOLS=1 $(GO) test -count=1 -timeout 60m ./...

# The fast tier: every package but e2e, -short, without docker-registry or
# runc (tests that need them skip). What .ci/run calls is `make test`.
test-unit:
	SLIPWAY_UNIT=1 $(GO) test -short -count=1 $$($(GO) list ./... | grep -v '/e2e$$')

test-short:
	$(GO) test -short ./...

# slipway side by side with ko, Trivy and cosign v2 (issue #13): the rows,
# goals and set-up are described in scripts/bench.sh (BENCH_RUNS, BENCH_ROWS).
# Builds ko once into the peers cache (scripts/bench-peers.txt); contacts
# nothing but loopback after that. Then the Go benchmarks of build and scan.
bench: build deps
	@scripts/bench.sh
	$(GO) test -run '^$$' -bench . -benchtime 3x ./build ./scan/trivy

# Every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m), one
# `go test -fuzz` per target: go test fuzzes one target per run. make test
# runs their seed corpora (in the tests and in each package's testdata/fuzz).
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./pipeline:FuzzDecodeStrict \
	./pipeline:FuzzDecodePolicyFile \
	./pipeline:FuzzBaseReference \
	./pipeline:FuzzExpand \
	./scan:FuzzParseIgnoreFile \
	./scan:FuzzParsePlainIgnore \
	./resolve:FuzzResolve \
	./publish:FuzzExtractArchive
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "== $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

clean:
	rm -rf bin dist
