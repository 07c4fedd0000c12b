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

if ! reachable; then
    echo "fence: redis at $host:$port unreachable" >&2
    exit 2
fi
# One year: the pause lasts until unfence/promote/follow lifts it.
if ! reply=$(rcli "$host" "$port" CLIENT PAUSE 31536000000 WRITE) || [ "$reply" != "OK" ]; then
    if ! reachable; then
        echo "fence: redis at $host:$port went away" >&2
        exit 2
    fi
    echo "fence: CLIENT PAUSE on $host:$port failed: $reply" >&2
    exit 1
fi
# A replica refuses writes already (READONLY), and a paused Redis 7.0 replica also stops
# applying its master's stream: if the target turns out to be a replica (e.g. it already
# follows the new primary), lift the pause again so it keeps replicating.
if [ "$(repl_field "$host" "$port" role)" = "slave" ]; then
    must_ok "$host" "$port" CLIENT UNPAUSE
fi
offset "$host" "$port"
