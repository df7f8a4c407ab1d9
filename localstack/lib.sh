# shellcheck shell=bash disable=SC2034,SC2154  # shares variables with the sourcing script
# Shared by ./start and ./stop (sourced, not run). Bash only.
# Sets the paths both scripts agree on and a few helpers.

ls_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

ls_info() { printf '%s: %s\n' "$ls_me" "$*" >&2; }
ls_die() {
	printf '%s: error: %s\n' "$ls_me" "$*" >&2
	exit 1
}

# --- configuration (environment) -------------------------------------------
ls_port=${LOCALSTACK_PORT:-4566}
if ! [[ $ls_port =~ ^[0-9]{1,5}$ ]] || ((10#$ls_port < 1 || 10#$ls_port > 65535)); then
	ls_die "LOCALSTACK_PORT='$ls_port' is not a TCP port number (1-65535)"
fi
ls_port=$((10#$ls_port))

ls_cache=${DRIFTLESS_CACHE:-${HOME:-/tmp}/.cache/driftless}
ls_run_dir=${DRIFTLESS_RUN_DIR:-$ls_cache/run}
ls_pidfile=$ls_run_dir/localstack-$ls_port.pid
ls_log=$ls_run_dir/localstack-$ls_port.log
ls_lockfile=$ls_run_dir/localstack-$ls_port.lock
ls_endpoint=http://127.0.0.1:$ls_port
ls_version=$(sed -n 's/^localstack-core\[runtime\]==\([^ ]*\).*/\1/p' "$ls_here/requirements.txt")

# Serialise start/stop for one port (a second `start` waits for the first).
# fd 9 must not leak into LocalStack, or the lock would live as long as it does.
ls_lock() {
	mkdir -p "$ls_run_dir" || ls_die "cannot create run directory $ls_run_dir"
	exec 9>"$ls_lockfile"
	flock -w 1200 9 || ls_die "another localstack/start or stop for port $ls_port held $ls_lockfile for 20 min; giving up"
}

# ls_ours PID: true if PID is alive (not a zombie), runs localstack.runtime.main
# and (when its environment is readable) was started for this port. Guards
# against acting on a recycled PID.
ls_ours() {
	local pid=$1 stat cmd
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != [ZX] ]] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmd == *localstack.runtime.main* ]] || return 1
	if [[ -r /proc/$pid/environ ]]; then
		tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null |
			grep -qxF "GATEWAY_LISTEN=127.0.0.1:$ls_port" || return 1
	fi
	return 0
}

# ls_gone PID: true once PID has fully exited: no such process, or a zombie
# with no threads left (a killed multi-threaded process can keep its sockets
# open for a moment while its threads are torn down).
ls_gone() {
	local pid=$1 stat tasks
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat:0:1} == [ZX] ]] || return 1
	tasks=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	((tasks <= 1))
}

# ls_read_pidfile: prints the recorded PID (empty if none).
ls_read_pidfile() {
	local pid=""
	[[ -f $ls_pidfile ]] && read -r pid <"$ls_pidfile" 2>/dev/null
	printf '%s' "$pid"
}

# ls_terminate PID [quiet]: SIGTERM, wait LOCALSTACK_STOP_GRACE seconds
# (default 5; hypercorn sometimes ignores TERM for 30 s+), then SIGKILL. Only
# signals PID while it is still our LocalStack. Returns 1 if it survives SIGKILL.
ls_terminate() {
	local pid=$1 quiet=${2:-} grace=${LOCALSTACK_STOP_GRACE:-5} i
	[[ $grace =~ ^[0-9]+$ ]] || grace=5
	ls_ours "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		ls_gone "$pid" && return 0
		sleep 0.1
	done
	if ls_ours "$pid"; then
		[[ -n $quiet ]] || ls_info "pid $pid still running ${grace} s after SIGTERM; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	for ((i = 0; i < 100; i++)); do
		ls_gone "$pid" && return 0
		sleep 0.1
	done
	return 1
}
