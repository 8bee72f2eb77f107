#!/bin/sh
# Wraps a command run by the onboarding tests over SSH. While the file FLAG
# exists, MODE says what happens instead of the command:
#   fail     exit 1 with a message
#   noop     exit 0 without running it
#   rsa-csr  print an RSA CSR (which the controller must refuse)
#   sh onboarding_fault.sh MODE FLAG COMMAND [ARG...]
set -eu
mode=$1
flag=$2
shift 2
if [ -e "$flag" ]; then
  case "$mode" in
    fail) echo "injected failure ($flag exists)" >&2; exit 1 ;;
    noop) exit 0 ;;
    rsa-csr)
      openssl req -new -newkey rsa:2048 -nodes -keyout /dev/null -subj /CN=rsa 2>/dev/null
      exit 0 ;;
  esac
fi
exec "$@"
