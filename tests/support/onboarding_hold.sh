#!/bin/sh
# Holds a command that a test runs over SSH until the file GATE exists (at
# most 120 s), then runs it: lets a test look at an onboarding in progress
# at a step of its choosing, with the real command behind it.
#   sh onboarding_hold.sh GATE COMMAND [ARG...]
set -eu
gate=$1
shift
i=0
while [ ! -e "$gate" ]; do
  i=$((i + 1))
  if [ $i -gt 1200 ]; then
    echo "held for 120 s: $gate never appeared" >&2
    exit 1
  fi
  sleep 0.1
done
exec "$@"
