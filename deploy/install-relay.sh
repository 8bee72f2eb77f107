#!/bin/sh
# PharosVPN remote relay: idempotent install on a Debian or Ubuntu host with
# systemd. `cox relays add` uploads it (with pharos-relay.service beside it)
# and runs it as root over SSH; it can also be run by hand:
#
#   sh install-relay.sh [--dir /etc/pharos-relay] [--user pharos-relay]
#
# What it needs (it downloads nothing):
#   - root, systemd (systemctl);
#   - the relay program as /usr/local/bin/pharos-relay: the compiled relay
#     (`deno task build:relay` makes dist/pharos-relay; copy it there), or
#     else a checkout in /opt/pharosvpn (with `deno install` run in it) and
#     deno on PATH, for which a small wrapper is written.
# What it does, each step skipped when already done:
#   1. a system user (default pharos-relay: no login, no home);
#   2. the directory for key and certificates (default /etc/pharos-relay),
#      owned by that user, mode 0750: `pharos-relay gen-csr`, run as the
#      user, makes relay.key (0600) there; the controller writes the
#      certificates (0644);
#   3. the unit /etc/systemd/system/pharos-relay.service (from the file
#      staged beside this script, when present) and a drop-in that runs it
#      as that user (DynamicUser alone could not read the key), with a cache
#      directory for deno and the chosen directory;
#   4. systemctl daemon-reload.
# It does not start the relay: onboarding does that once the certificates
# are installed. Exit status 0 means the host is ready for `gen-csr`.
set -eu

dir=/etc/pharos-relay
user=pharos-relay
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --user) user=${2:?--user needs a name}; shift 2 ;;
    *) echo "install-relay.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$dir" in
  /*) ;;
  *) echo "install-relay.sh: --dir must be an absolute path" >&2; exit 2 ;;
esac
case "$dir$user" in
  *[!A-Za-z0-9._/+-]*) echo "install-relay.sh: --dir and --user take letters, digits and ._/+- only" >&2; exit 2 ;;
esac

say() { echo "install-relay: $*"; }
die() { echo "install-relay: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root"
command -v systemctl >/dev/null 2>&1 || die "systemd (systemctl) is required"
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  case "${ID:-}" in
    debian | ubuntu) ;;
    *) say "warning: tested on Debian and Ubuntu only, this is ${ID:-unknown}" ;;
  esac
fi

bin=/usr/local/bin/pharos-relay
here=$(dirname "$0")

# The relay program.
if [ -x "$bin" ] && ! grep -q "pharos-relay wrapper" "$bin" 2>/dev/null; then
  say "using the relay program in $bin"
elif [ -f /opt/pharosvpn/relay/main.ts ] && command -v deno >/dev/null 2>&1; then
  deno=$(command -v deno)
  tmp="$bin.tmp.$$"
  cat >"$tmp" <<EOF
#!/bin/sh
# pharos-relay wrapper written by install-relay.sh: the relay from the checkout.
export DENO_DIR=\${DENO_DIR:-/var/cache/pharos-relay}
exec "$deno" run --allow-net --allow-read --allow-write --allow-env --allow-sys --allow-run=prlimit --allow-ffi=/usr/lib,/lib,/usr/lib64,/lib64 /opt/pharosvpn/relay/main.ts "\$@"
EOF
  chmod 0755 "$tmp"
  if cmp -s "$tmp" "$bin"; then
    rm -f "$tmp"
    say "using the wrapper $bin (the checkout in /opt/pharosvpn)"
  else
    mv -f "$tmp" "$bin"
    say "wrote $bin running /opt/pharosvpn/relay/main.ts with $deno"
  fi
else
  die "no relay program: copy the compiled relay (deno task build:relay -> dist/pharos-relay) to $bin, or put a checkout in /opt/pharosvpn (run deno install there) and install deno"
fi

# The user and its directories.
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
  say "created the system user $user"
fi
install -d -m 0750 -o "$user" -g "$user" "$dir"
install -d -m 0750 -o "$user" -g "$user" /var/cache/pharos-relay

# The unit and the drop-in.
unit=/etc/systemd/system/pharos-relay.service
if [ -f "$here/pharos-relay.service" ]; then
  if ! cmp -s "$here/pharos-relay.service" "$unit"; then
    install -m 0644 "$here/pharos-relay.service" "$unit"
    say "installed $unit"
  fi
elif [ ! -f "$unit" ]; then
  die "no pharos-relay.service beside this script and none in $unit"
fi
dropin=/etc/systemd/system/pharos-relay.service.d
install -d -m 0755 "$dropin"
conf=$(cat <<EOF
# Written by install-relay.sh: run as $user, which owns $dir and its key.
[Service]
User=$user
Group=$user
CacheDirectory=pharos-relay
Environment=DENO_DIR=/var/cache/pharos-relay
ReadOnlyPaths=
ReadOnlyPaths=$dir
ExecStart=
ExecStart=$bin run --dir $dir
EOF
)
if [ "$(cat "$dropin/10-pharos-install.conf" 2>/dev/null || true)" != "$conf" ]; then
  printf '%s\n' "$conf" >"$dropin/10-pharos-install.conf"
  say "wrote $dropin/10-pharos-install.conf"
fi
systemctl daemon-reload
say "ready: $bin, user $user, directory $dir"
