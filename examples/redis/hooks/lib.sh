# Shared helpers for the Redis hooks; sourced, not run. POSIX sh.
#
# REDIS_PORT (required) is the local Redis port, set in each hook's `env`.
# REDIS_HOST defaults to 127.0.0.1. REDIS_CLI_TIMEOUT bounds every redis-cli call (seconds).

: "${REDIS_PORT:?REDIS_PORT must be set in the hook env}"
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_CLI_TIMEOUT=${REDIS_CLI_TIMEOUT:-2}

# rcli HOST PORT ARGS... — one redis-cli call, bounded in time; non-zero exit on an error reply.
rcli() {
    _host=$1
    _port=$2
    shift 2
    _rc=0
    _out=$(timeout "$REDIS_CLI_TIMEOUT" redis-cli -e -h "$_host" -p "$_port" "$@") || _rc=$?
    printf '%s\n' "$_out" | tr -d '\r'
    return "$_rc"
}

# must_ok HOST PORT ARGS... — the reply must be OK, or OK with a note (REPLICAOF to the
# master a replica already follows answers "OK Already connected to specified master").
must_ok() {
    _reply=$(rcli "$@") || { echo "redis $1:$2: $3 $4 failed: $_reply" >&2; exit 1; }
    case $_reply in
        OK | "OK "*) ;;
        *)
            echo "redis $1:$2: unexpected reply to $3 $4: $_reply" >&2
            exit 1
            ;;
    esac
}

# repl_field HOST PORT FIELD — one field of INFO replication (CRs stripped), empty if absent.
repl_field() {
    _info=$(rcli "$1" "$2" INFO replication) || { echo "redis $1:$2: INFO replication failed" >&2; exit 1; }
    printf '%s\n' "$_info" | sed -n "s/^$3://p" | head -n 1
}

# offset HOST PORT — the replication offset: what this Redis has written (master) or
# processed from its master (replica). Printed as one integer.
offset() {
    _off=$(repl_field "$1" "$2" master_repl_offset)
    case $_off in
        '' | *[!0-9]*) echo "redis $1:$2: no master_repl_offset in INFO replication" >&2; exit 1 ;;
    esac
    echo "$_off"
}
