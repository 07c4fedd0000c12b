#!/bin/sh
# position hook: print the local replication offset ("OFFSET") on stdout.
set -eu
. "$(dirname "$0")/lib.sh"
offset "$REDIS_HOST" "$REDIS_PORT"
