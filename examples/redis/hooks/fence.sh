#!/bin/sh
# fence hook: make the Redis at $AUTOPILOT_TARGET_HOST:$AUTOPILOT_TARGET_PORT (default: the
# local one) refuse writes, then print its final replication offset on stdout.
# CLIENT PAUSE ... WRITE blocks writes but keeps reads and the replication stream going, so
# replicas can catch up with everything the fenced master acknowledged.
set -eu
. "$(dirname "$0")/lib.sh"
host=${AUTOPILOT_TARGET_HOST:-$REDIS_HOST}
port=${AUTOPILOT_TARGET_PORT:-$REDIS_PORT}
# One year: the pause lasts until unfence/promote/follow lifts it.
must_ok "$host" "$port" CLIENT PAUSE 31536000000 WRITE
offset "$host" "$port"
