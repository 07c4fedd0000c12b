#!/bin/sh
# unfence hook: lift a fence on the local Redis.
set -eu
. "$(dirname "$0")/lib.sh"
must_ok "$REDIS_HOST" "$REDIS_PORT" CLIENT UNPAUSE
echo "unfenced $REDIS_HOST:$REDIS_PORT"
