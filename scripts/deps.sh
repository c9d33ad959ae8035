#!/bin/sh
# Installs the Debian 12 packages a task needs, only those missing.
# Usage: scripts/deps.sh build|test|bench ...
# Runs apt-get as root (or through sudo); does nothing when all are present.
set -eu

build="build-essential curl cmake pkg-config libuv1-dev libmicrohttpd-dev libjansson-dev
       libyaml-dev libsqlite3-dev libcurl4-openssl-dev libsystemd-dev libgnutls28-dev"
test="$build libcmocka-dev python3 python3-pytest python3-yaml prometheus openssl valgrind wabt
      clang lld libclang-rt-14-dev nodejs npm"
bench="$build python3 wrk nginx-light clang lld wabt"

want=""
for group in "$@"; do
  case "$group" in
    build) want="$want $build" ;;
    test) want="$want $test" ;;
    bench) want="$want $bench" ;;
    *) echo "deps.sh: unknown group '$group' (build, test, bench)" >&2; exit 2 ;;
  esac
done

missing=""
for pkg in $want; do
  case " $missing " in *" $pkg "*) continue ;; esac
  # NodeSource's nodejs package carries npm and conflicts with Debian's.
  [ "$pkg" = npm ] && command -v npm >/dev/null 2>&1 && continue
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $pkg"
  fi
done
[ -z "$missing" ] && exit 0

echo "Installing Debian packages:$missing"
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root or sudo to install:$missing" >&2; exit 1; }
  sudo="sudo"
fi
# sudo resets the environment: pass DEBIAN_FRONTEND through env.
apt="$sudo env DEBIAN_FRONTEND=noninteractive apt-get"
# A fresh machine has empty package lists; refresh them once when a package is unknown.
if ! $apt install -y --no-install-recommends $missing; then
  $apt update
  $apt install -y --no-install-recommends $missing
fi

# prometheus (for promtool) and nginx (the benchmark's reference) start
# network daemons when installed on a systemd host; we only want their
# binaries, so stop the services this script itself just installed.
if [ -d /run/systemd/system ]; then
  for pair in prometheus:prometheus.service nginx-light:nginx.service; do
    pkg=${pair%%:*} unit=${pair#*:}
    case " $missing " in
      *" $pkg "*) $sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true ;;
    esac
  done
fi
