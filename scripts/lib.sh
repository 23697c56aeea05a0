# Shared helpers for scripts/*.sh (sourced).
export GOEXPERIMENT=jsonv2

# start_registry DIR [accesslog]: starts Debian's docker-registry on a free
# loopback port with storage in DIR (and, with "accesslog", every request
# logged to DIR/registry.log); sets REGISTRY=127.0.0.1:PORT, REGISTRY_PID
# and REGISTRY_LOG.
start_registry() {
	local dir=$1 port quiet=true
	[ "${2:-}" = accesslog ] && quiet=false
	port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	mkdir -p "$dir"
	REGISTRY_LOG=$dir/registry.log
	cat > "$dir/config.yml" <<EOC
version: 0.1
log: {level: error, accesslog: {disabled: $quiet}}
storage: {filesystem: {rootdirectory: $dir/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port, relativeurls: true, secret: bench}
EOC
	/usr/bin/docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
	REGISTRY_PID=$!
	REGISTRY=127.0.0.1:$port
	for _ in $(seq 100); do
		curl -fs "http://$REGISTRY/v2/" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "registry did not start: $(cat "$dir/registry.log")" >&2
	return 1
}

# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# elapsed START: seconds since START, 3 decimals.
elapsed() { python3 -c "import sys;print('%.3f'%(float(sys.argv[2])-float(sys.argv[1])))" "$1" "$(now)"; }

# make_mono DIR: the bench's monorepo in DIR: 20 services (cmd/svc01 …
# cmd/svc20) sharing internal/shared, whose Banner the benches edit. Sets
# svcs to the service names.
make_mono() {
	local mono=$1 i
	mkdir -p "$mono/internal/shared"
	printf 'module example.com/mono\n\ngo 1.26\n' > "$mono/go.mod"
	cat > "$mono/internal/shared/shared.go" <<'EOG'
// Package shared is what the 20 services of the bench have in common.
package shared

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
)

// Banner is edited by the bench (the shared-package change).
const Banner = "v0"

// Serve runs the service called name on $PORT (default 8080).
func Serve(name string) error {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	addr := ":" + os.Getenv("PORT")
	if addr == ":" {
		addr = ":8080"
	}
	http.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s %s\n", name, Banner)
	})
	log.Info("listening", "service", name, "addr", addr)
	return http.ListenAndServe(addr, nil)
}
EOG
	svcs=()
	for i in $(seq -w 1 20); do
		svcs+=("svc$i")
		mkdir -p "$mono/cmd/svc$i"
		cat > "$mono/cmd/svc$i/main.go" <<EOG
package main

import (
	"fmt"
	"os"

	"example.com/mono/internal/shared"
)

func main() {
	if err := shared.Serve("svc$i"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
EOG
	done
}
