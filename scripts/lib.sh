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
