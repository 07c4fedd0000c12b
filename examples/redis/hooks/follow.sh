#!/bin/sh
# follow hook: replicate from the primary at $AUTOPILOT_PRIMARY_HOST:$AUTOPILOT_PRIMARY_PORT
# (or $AUTOPILOT_PRIMARY_ADDRESS, host:port). REPLICAOF comes before CLIENT UNPAUSE so a
# fenced former master never accepts a write in between.
set -eu
. "$(dirname "$0")/lib.sh"
host=${AUTOPILOT_PRIMARY_HOST:-}
port=${AUTOPILOT_PRIMARY_PORT:-}
if [ -z "$host" ] || [ -z "$port" ]; then
    addr=${AUTOPILOT_PRIMARY_ADDRESS:-}
    host=${addr%:*}
    port=${addr##*:}
fi
if [ -z "$host" ] || [ -z "$port" ] || [ "$host" = "$port" ]; then
    echo "follow: no primary address in the environment" >&2
    exit 1
fi
must_ok "$REDIS_HOST" "$REDIS_PORT" REPLICAOF "$host" "$port"
must_ok "$REDIS_HOST" "$REDIS_PORT" CLIENT UNPAUSE
echo "following $host:$port"
