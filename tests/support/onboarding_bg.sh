#!/bin/sh
# Starts a command detached from the SSH session (its own session, output
# to LOG, stdin from /dev/null) and writes its pid to PIDFILE: the onboarding
# tests' "start the service" step. If PIDFILE names a live process, that one
# is stopped first (a restart, as systemctl restart would do).
#   sh onboarding_bg.sh PIDFILE LOG COMMAND [ARG...]
set -eu
pidfile=$1
log=$2
shift 2
if [ -s "$pidfile" ]; then
  old=$(cat "$pidfile")
  if kill -0 "$old" 2>/dev/null; then
    kill "$old" 2>/dev/null || true
    i=0
    while kill -0 "$old" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$old" 2>/dev/null || true
  fi
fi
setsid "$@" >>"$log" 2>&1 </dev/null &
echo $! >"$pidfile"
