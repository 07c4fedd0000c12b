#!/bin/sh
# fence hook: make the Redis at $AUTOPILOT_TARGET_HOST:$AUTOPILOT_TARGET_PORT (default: the
# local one) refuse writes, then print its final replication offset on stdout.
# CLIENT PAUSE ... WRITE blocks writes but keeps reads and the replication stream going, so
# replicas can catch up with everything the fenced master acknowledged.
# Exit 2 means "the target cannot be reached" (nothing answers there, so nothing to fence).
set -eu
. "$(dirname "$0")/lib.sh"
host=${AUTOPILOT_TARGET_HOST:-$REDIS_HOST}
port=${AUTOPILOT_TARGET_PORT:-$REDIS_PORT}

# Empty output: no connection (refused or timed out). An error reply is still "reachable".
reachable() {
    [ -n "$(rcli "$host" "$port" PING 2>/dev/null || true)" ]
}

fence() {
    # One year: the pause lasts until unfence/promote/follow lifts it.
    must_ok "$host" "$port" CLIENT PAUSE 31536000000 WRITE
    # A replica refuses writes already (READONLY), and a paused Redis 7.0 replica also stops
    # applying its master's stream: if the target turns out to be a replica (e.g. it already
    # follows the new primary), lift the pause again so it keeps replicating.
    role=$(repl_field "$host" "$port" role)
    if [ "$role" = "slave" ]; then
        must_ok "$host" "$port" CLIENT UNPAUSE
    fi
    offset "$host" "$port"
}

if ! reachable; then
    echo "fence: redis at $host:$port unreachable" >&2
    exit 2
fi
if out=$(fence); then
    printf '%s\n' "$out"
    exit 0
fi
if ! reachable; then
    echo "fence: redis at $host:$port went away while being fenced" >&2
    exit 2
fi
echo "fence: failed on $host:$port" >&2
exit 1
