#!/bin/sh
# promote hook: make the local Redis a writable master.
set -eu
. "$(dirname "$0")/lib.sh"
must_ok "$REDIS_HOST" "$REDIS_PORT" REPLICAOF NO ONE
must_ok "$REDIS_HOST" "$REDIS_PORT" CLIENT UNPAUSE
role=$(repl_field "$REDIS_HOST" "$REDIS_PORT" role)
if [ "$role" != "master" ]; then
    echo "redis $REDIS_HOST:$REDIS_PORT: still $role after REPLICAOF NO ONE" >&2
    exit 1
fi
echo "promoted $REDIS_HOST:$REDIS_PORT"
