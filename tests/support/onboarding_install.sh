#!/bin/sh
# Test stand-in for deploy/install-agent.sh / install-relay.sh, run by the
# onboarding tests over SSH as root: idempotent, records each run in
# DIR/install.log, checks that deno is there (the test's gen-csr needs it),
# and fails while the file FAIL exists (to test resuming after a failure).
#   sh onboarding_install.sh DIR FAIL
# Without arguments (a CLI test) it only says so and succeeds.
set -eu
if [ $# -eq 0 ]; then
  echo "test install script: nothing to do"
  exit 0
fi
dir=$1
fail=$2
if [ -e "$fail" ]; then
  echo "injected install failure ($fail exists)" >&2
  exit 1
fi
command -v deno >/dev/null 2>&1 || { echo "deno is missing on this host" >&2; exit 1; }
mkdir -p "$dir"
chmod 0700 "$dir"
echo "run by uid $(id -u)" >>"$dir/install.log"
echo "test agent installed in $dir"
