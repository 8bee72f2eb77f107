#!/usr/bin/env bash
# Installs (or updates) the PharosVPN node agent on a Debian or Ubuntu
# machine. The controller's SSH onboarding uploads the sources (and,
# optionally, Deno and xray binaries with their SHA-256) and runs this
# script as root; an operator can run it by hand the same way.
#
# Idempotent: every step looks first and changes only what differs, and
# says so ("ok:" unchanged, "changed:" done, "would change:" with
# --dry-run). Running it twice changes nothing the second time.
#
#   install-agent.sh [--source DIR] [--deno FILE --deno-sha256 HEX]
#                    [--xray FILE --xray-sha256 HEX] [--no-packages] [--no-deps]
#                    [--root DIR] [--dry-run | --check]
#
#   --source DIR       agent sources to install (default: this checkout)
#   --deno FILE        Deno binary for /usr/local/bin/deno (default: keep the one
#                      there, else the deno on PATH); --deno-sha256 must match
#   --xray FILE        xray binary for /usr/local/bin/xray; --xray-sha256 must match
#   --no-packages      do not install Debian packages
#   --no-deps          do not cache the npm dependencies (deno install)
#   --root DIR         install under DIR instead of / (no packages, no systemctl);
#                      DIR needs etc/os-release, etc/passwd, etc/group, etc/shadow
#   --dry-run          change nothing; print what would change
#   --check            like --dry-run, but exit 1 when anything would change
#
# Exit codes: 0 done (or nothing to do), 1 --check found differences,
# 2 bad arguments, 3 unsupported system, 4 a step failed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT=/
DRY=0
CHECK=0
PACKAGES=1
DEPS=1
DENO_FILE=""
DENO_SHA=""
XRAY_FILE=""
XRAY_SHA=""
USER_NAME=pharos-agent
CHANGES=0

die() {
  echo "install-agent: error: $2" >&2
  exit "$1"
}

while (($#)); do
  case "$1" in
    --source) SOURCE=${2:?--source needs a directory}; shift 2 ;;
    --deno) DENO_FILE=${2:?--deno needs a file}; shift 2 ;;
    --deno-sha256) DENO_SHA=${2:?--deno-sha256 needs a value}; shift 2 ;;
    --xray) XRAY_FILE=${2:?--xray needs a file}; shift 2 ;;
    --xray-sha256) XRAY_SHA=${2:?--xray-sha256 needs a value}; shift 2 ;;
    --no-packages) PACKAGES=0; shift ;;
    --no-deps) DEPS=0; shift ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --check) DRY=1; CHECK=1; shift ;;
    -h | --help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die 2 "unknown argument \"$1\" (see --help)" ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die 2 "run as root (it creates a system user and system directories)"
[[ -d $ROOT ]] || die 2 "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
[[ -f $SOURCE/agent/main.ts && -f $SOURCE/deno.json ]] || die 2 "--source $SOURCE holds no agent sources (agent/main.ts, deno.json)"
for v in DENO_SHA XRAY_SHA; do
  [[ -z ${!v} || ${!v} =~ ^[0-9a-f]{64}$ ]] || die 2 "${v,,}: expected 64 lowercase hex digits"
done
[[ -z $DENO_FILE || -n $DENO_SHA ]] || die 2 "--deno needs --deno-sha256"
[[ -z $XRAY_FILE || -n $XRAY_SHA ]] || die 2 "--xray needs --xray-sha256"
SYSTEM=0
[[ $ROOT == / ]] && SYSTEM=1
P=${ROOT%/} # path prefix ("" for /)

ok() { echo "ok: $1"; }
change() {
  CHANGES=$((CHANGES + 1))
  if ((DRY)); then echo "would change: $1"; return 1; fi
  echo "changed: $1"
}

# 1. The operating system.
check_os() {
  local f="$P/etc/os-release" id="" like="" ver=""
  [[ -r $f ]] || die 3 "$f not found: only Debian and Ubuntu are supported"
  id=$(sed -n 's/^ID=//p' "$f" | tr -d '"')
  like=$(sed -n 's/^ID_LIKE=//p' "$f" | tr -d '"')
  ver=$(sed -n 's/^VERSION_ID=//p' "$f" | tr -d '"')
  case "$id" in
    debian) [[ ${ver%%.*} -ge 12 ]] 2>/dev/null || die 3 "Debian $ver is too old: Debian 12 or newer is needed" ;;
    ubuntu) [[ ${ver%%.*} -ge 22 ]] 2>/dev/null || die 3 "Ubuntu $ver is too old: Ubuntu 22.04 or newer is needed" ;;
    *) [[ " $like " == *" debian "* ]] || die 3 "unsupported system \"$id\": only Debian 12+ and Ubuntu 22.04+ are supported" ;;
  esac
  [[ $(uname -s) == Linux ]] || die 3 "not Linux"
  ok "system $id $ver"
}

# 2. Debian packages of the data plane (AmneziaWG when the archive has it).
install_packages() {
  ((PACKAGES && SYSTEM)) || { ok "packages skipped"; return; }
  local want=(iproute2 iptables procps wireguard-tools ca-certificates) missing=()
  if apt-cache show amneziawg >/dev/null 2>&1; then
    want+=(amneziawg amneziawg-tools)
  else
    want+=(wireguard-go)
  fi
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then ok "packages ${want[*]}"; return; fi
  change "install packages ${missing[*]}" || return 0
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
  if dpkg-query -W -f='${Status}' amneziawg 2>/dev/null | grep -q "install ok installed"; then
    echo amneziawg >/etc/modules-load.d/pharos-agent.conf
    modprobe amneziawg || echo "install-agent: warning: modprobe amneziawg failed; the agent falls back to plain WireGuard" >&2
  fi
}

# 3. The system user.
user_line() { awk -F: -v u="$USER_NAME" '$1 == u' "$P/etc/passwd" 2>/dev/null || true; }
ensure_user() {
  if [[ -n $(user_line) ]] || { ((SYSTEM)) && getent passwd "$USER_NAME" >/dev/null; }; then
    ok "user $USER_NAME"
    return
  fi
  change "create system user $USER_NAME" || return 0
  local args=(--system --user-group --home-dir /var/lib/pharos-agent --no-create-home --shell /usr/sbin/nologin)
  ((SYSTEM)) || args+=(--prefix "$ROOT")
  useradd "${args[@]}" "$USER_NAME"
}
uid_gid() {
  if ((SYSTEM)); then
    echo "$(id -u "$USER_NAME"):$(id -g "$USER_NAME")"
  else
    user_line | awk -F: '{print $3 ":" $4}'
  fi
}

# 4. Directories with their owner and mode.
ensure_dir() { # path mode owner(user|root)
  local path="$P$1" mode=$2 owner=$3 want have
  if ((DRY)) && [[ $owner == user && -z $(uid_gid) ]]; then want="(new user)"; else
    want=$([[ $owner == user ]] && uid_gid || echo "0:0")
  fi
  if [[ ! -d $path ]]; then
    change "create $1 ($mode)" || return 0
    mkdir -p "$path"
  fi
  have="$(stat -c '%a %u:%g' "$path" 2>/dev/null || echo missing)"
  if [[ $have != "${mode#0} $want" ]]; then
    change "$1: mode/owner $have -> ${mode#0} $want" || return 0
    chown "$want" "$path"
    chmod "$mode" "$path"
  else
    ok "$1 ${mode#0} $want"
  fi
}

# System directories: created when missing, never re-moded (they are not ours).
ensure_exists() {
  if [[ -d $P$1 ]]; then ok "$1"; return; fi
  change "create $1" || return 0
  mkdir -p "$P$1"
}

# 5. A binary verified by its SHA-256 (CONTRACTS.md §7.12: nothing installed unchecked).
install_binary() { # file sha256 destination
  local file=$1 sha=$2 dest="$P$3"
  [[ -f $file ]] || die 4 "$file not found"
  [[ $(sha256sum "$file" | cut -d' ' -f1) == "$sha" ]] || die 4 "$file does not match its SHA-256 $sha; refusing to install it"
  if [[ -f $dest ]] && cmp -s "$file" "$dest"; then ok "$3"; return; fi
  change "install $3" || return 0
  mkdir -p "$(dirname "$dest")"
  install -m 0755 -o 0 -g 0 "$file" "$dest.new"
  mv -f "$dest.new" "$dest"
}
ensure_deno() {
  if [[ -n $DENO_FILE ]]; then install_binary "$DENO_FILE" "$DENO_SHA" /usr/local/bin/deno; return; fi
  if [[ -x $P/usr/local/bin/deno ]]; then ok "/usr/local/bin/deno"; return; fi
  local found
  found=$(command -v deno || true)
  [[ -n $found ]] || die 4 "no Deno: give --deno FILE --deno-sha256 HEX, or install deno 2 first"
  change "install /usr/local/bin/deno from $found" || return 0
  mkdir -p "$P/usr/local/bin"
  install -m 0755 -o 0 -g 0 "$(readlink -f "$found")" "$P/usr/local/bin/deno.new"
  mv -f "$P/usr/local/bin/deno.new" "$P/usr/local/bin/deno"
}

# 6. The agent's sources, swapped in whole (never half-copied).
SOURCE_PARTS=(agent core proto relay deno.json deno.lock)
install_sources() {
  local dest="$P/opt/pharos-agent" stage="$P/opt/.pharos-agent.new" same=1
  for part in "${SOURCE_PARTS[@]}"; do
    [[ -e $SOURCE/$part ]] || die 4 "$SOURCE/$part missing"
    diff -rq "$SOURCE/$part" "$dest/$part" >/dev/null 2>&1 || same=0
  done
  if ((same)); then ok "/opt/pharos-agent sources"; return; fi
  change "install agent sources into /opt/pharos-agent" || return 0
  rm -rf "$stage"
  mkdir -p "$stage"
  for part in "${SOURCE_PARTS[@]}"; do cp -R "$SOURCE/$part" "$stage/"; done
  # Keep installed npm dependencies across updates.
  [[ -d $dest/node_modules ]] && mv "$dest/node_modules" "$stage/node_modules"
  chown -R 0:0 "$stage"
  chmod -R u=rwX,go=rX "$stage"
  rm -rf "$dest.old"
  [[ -d $dest ]] && mv "$dest" "$dest.old"
  mv "$stage" "$dest"
  rm -rf "$dest.old"
}

# 7. npm dependencies, cached where the service reads them.
install_deps() {
  ((DEPS)) || { ok "dependencies skipped"; return; }
  local deno="$P/usr/local/bin/deno" cache="$P/var/cache/pharos-agent"
  if DENO_DIR=$cache "$deno" run --frozen --cached-only --allow-all --config "$P/opt/pharos-agent/deno.json" \
    "$P/opt/pharos-agent/agent/main.ts" --help >/dev/null 2>&1; then
    ok "dependencies cached"
    return
  fi
  change "cache npm dependencies (deno install --frozen)" || return 0
  (cd "$P/opt/pharos-agent" && DENO_DIR=$cache "$deno" install --frozen --quiet)
  chown -R "$(uid_gid)" "$cache"
}

# 8. Settings file (kept when present: the operator's).
ensure_config() {
  local f="$P/etc/pharos-agent/agent.json" body="{}"
  [[ -x $P/usr/local/bin/xray ]] && body='{ "xray": "/usr/local/bin/xray" }'
  if [[ -f $f ]]; then ok "/etc/pharos-agent/agent.json (kept)"; else
    change "write /etc/pharos-agent/agent.json" || return 0
    echo "$body" >"$f"
  fi
  local gid want have
  gid=$(uid_gid | cut -d: -f2)
  want="640 0:$gid"
  have=$(stat -c '%a %u:%g' "$f" 2>/dev/null || echo missing)
  if [[ $have != "$want" ]]; then
    change "/etc/pharos-agent/agent.json: mode/owner $have -> $want" || return 0
    chown "0:$gid" "$f"
    chmod 0640 "$f"
  fi
}

# 9. The systemd unit.
install_unit() {
  local src="$SOURCE/deploy/systemd/pharos-agent.service" dest="$P/etc/systemd/system/pharos-agent.service"
  [[ -f $src ]] || die 4 "$src missing"
  if [[ -f $dest ]] && cmp -s "$src" "$dest"; then ok "pharos-agent.service"; return; fi
  change "install pharos-agent.service" || return 0
  mkdir -p "$(dirname "$dest")"
  install -m 0644 -o 0 -g 0 "$src" "$dest"
  if ((SYSTEM)) && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable pharos-agent.service >/dev/null
    # A running agent picks up new sources; a new one waits for its certificate.
    systemctl try-restart pharos-agent.service
  fi
}

check_os
install_packages
ensure_user
ensure_exists /opt
ensure_exists /usr/local/bin
ensure_dir /var/lib/pharos-agent 0700 user
ensure_dir /var/cache/pharos-agent 0750 user
ensure_dir /etc/pharos-agent 0755 root
ensure_deno
[[ -n $XRAY_FILE ]] && install_binary "$XRAY_FILE" "$XRAY_SHA" /usr/local/bin/xray
install_sources
install_deps
ensure_config
install_unit

if ((CHANGES == 0)); then
  echo "install-agent: nothing to change"
elif ((DRY)); then
  echo "install-agent: $CHANGES change(s) needed"
  ((CHECK)) && exit 1
else
  echo "install-agent: $CHANGES change(s) made"
fi
if [[ ! -f $P/var/lib/pharos-agent/node.crt ]]; then
  cat <<EOF
next: make the node key and CSR (the key never leaves this machine):
  runuser -u $USER_NAME -- env DENO_DIR=/var/cache/pharos-agent /usr/local/bin/deno run --frozen --cached-only --allow-all \\
    --config /opt/pharos-agent/deno.json /opt/pharos-agent/agent/main.ts gen-csr --dir /var/lib/pharos-agent
then install node.crt, ca.crt, fleet-ca.crt and device-ca.crt there (owner $USER_NAME, mode 0600)
and run: systemctl start pharos-agent
EOF
fi
