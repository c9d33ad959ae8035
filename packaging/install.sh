#!/bin/sh
# Installs Caxton: the binary, the systemd unit, the default configuration,
# the logrotate rules and the data and log directories.
#
#   packaging/install.sh BINARY [DESTDIR] [PREFIX]
#
# BINARY   the caxton binary to install (make install passes build/caxton)
# DESTDIR  staging root for packagers; empty installs into this system
# PREFIX   installation prefix of the binary (default /usr/local)
#
# With an empty DESTDIR and as root it also creates the system user and
# group `caxton`, hands the directories to them and reloads systemd. An
# existing /etc/caxton/caxton.yaml is never overwritten.
set -eu

usage() {
    echo "usage: $0 BINARY [DESTDIR] [PREFIX]" >&2
    exit 2
}

say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
    warn "$*"
    exit 1
}

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
    usage
fi
BINARY=$1
DESTDIR=${2:-}
PREFIX=${3:-/usr/local}

HERE=$(cd "$(dirname "$0")" && pwd)

# Trailing slashes would double up in the paths below.
while [ "${DESTDIR%/}" != "$DESTDIR" ]; do DESTDIR=${DESTDIR%/}; done
while [ "$PREFIX" != "/" ] && [ "${PREFIX%/}" != "$PREFIX" ]; do PREFIX=${PREFIX%/}; done

if [ ! -f "$BINARY" ] || [ ! -x "$BINARY" ]; then
    die "$BINARY is not an executable file (build it first: make build)"
fi
case $PREFIX in
/*) ;;
*) die "PREFIX must be an absolute path, got '$PREFIX'" ;;
esac
case $PREFIX in
*[!A-Za-z0-9/._+-]*) die "PREFIX may only hold letters, digits and / . _ + -, got '$PREFIX'" ;;
esac
for f in caxton.service caxton.yaml logrotate; do
    [ -f "$HERE/$f" ] || die "missing $HERE/$f"
done

BINDIR=$PREFIX/bin
[ "$PREFIX" != "/" ] || BINDIR=/bin
SYSTEM=false
if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ]; then
    SYSTEM=true
fi

# ---- the system user ------------------------------------------------------

nologin_shell() {
    for sh in /usr/sbin/nologin /sbin/nologin; do
        if [ -x "$sh" ]; then
            echo "$sh"
            return
        fi
    done
    echo /bin/false
}

ensure_user() {
    if getent passwd caxton >/dev/null 2>&1; then
        return
    fi
    shell=$(nologin_shell)
    if command -v useradd >/dev/null 2>&1; then
        if getent group caxton >/dev/null 2>&1; then
            useradd --system --home-dir /var/lib/caxton --no-create-home --shell "$shell" \
                --gid caxton caxton
        else
            useradd --system --home-dir /var/lib/caxton --no-create-home --shell "$shell" \
                --user-group caxton
        fi
    elif command -v adduser >/dev/null 2>&1; then
        adduser --system --home /var/lib/caxton --no-create-home --shell "$shell" \
            --group caxton
    else
        die "cannot create the user caxton: neither useradd nor adduser is installed"
    fi
    say "created system user and group caxton"
}

if $SYSTEM; then
    ensure_user
fi

# ---- files ----------------------------------------------------------------

TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The binary.
mkdir -p "$DESTDIR$BINDIR"
install -m 0755 "$BINARY" "$DESTDIR$BINDIR/caxton"
say "installed $DESTDIR$BINDIR/caxton"

# The unit, pointing at the binary just installed.
sed "s|^ExecStart=/usr/local/bin/caxton |ExecStart=$BINDIR/caxton |" \
    "$HERE/caxton.service" >"$TMP"
grep -q "^ExecStart=$BINDIR/caxton serve " "$TMP" || die "could not set ExecStart in the unit"
mkdir -p "$DESTDIR/etc/systemd/system"
install -m 0644 "$TMP" "$DESTDIR/etc/systemd/system/caxton.service"
say "installed $DESTDIR/etc/systemd/system/caxton.service"

# The configuration: only when there is none, so an operator's is kept.
CONFIG=$DESTDIR/etc/caxton/caxton.yaml
mkdir -p "$DESTDIR/etc/caxton"
chmod 0755 "$DESTDIR/etc/caxton"
if [ -e "$CONFIG" ]; then
    say "kept existing $CONFIG (the default is $HERE/caxton.yaml)"
else
    install -m 0640 "$HERE/caxton.yaml" "$CONFIG"
    # The server runs as caxton and must read it.
    if getent group caxton >/dev/null 2>&1; then
        chgrp caxton "$CONFIG" 2>/dev/null || warn "could not give $CONFIG to group caxton"
    elif $SYSTEM; then
        warn "no group caxton: $CONFIG is readable by root only"
    fi
    say "installed $CONFIG"
fi

# Log rotation.
mkdir -p "$DESTDIR/etc/logrotate.d"
install -m 0644 "$HERE/logrotate" "$DESTDIR/etc/logrotate.d/caxton"
say "installed $DESTDIR/etc/logrotate.d/caxton"

# Data and log directories.
mkdir -p "$DESTDIR/var/lib/caxton" "$DESTDIR/var/log/caxton"
chmod 0700 "$DESTDIR/var/lib/caxton"
chmod 0750 "$DESTDIR/var/log/caxton"
say "created $DESTDIR/var/lib/caxton (0700) and $DESTDIR/var/log/caxton (0750)"

# ---- this system ----------------------------------------------------------

if ! $SYSTEM; then
    if [ -z "$DESTDIR" ]; then
        warn "not root: did not create the user caxton, chown the directories or reload systemd"
    fi
    exit 0
fi

chown caxton:caxton /var/lib/caxton /var/log/caxton

RUNNING=false
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || warn "systemctl daemon-reload failed; run it before starting caxton"
    if systemctl is-active --quiet caxton.service 2>/dev/null; then
        RUNNING=true
    fi
fi

say ""
if $RUNNING; then
    say "Caxton is running the previous binary; switch to the new one with:"
    say "  systemctl restart caxton"
else
    say "Next steps:"
    if [ -d /run/systemd/system ]; then
        say "  systemctl enable --now caxton        # start it now and at boot"
        say "  systemctl status caxton              # is it running?"
        say "  journalctl -u caxton -f              # follow its log"
    else
        say "  (no systemd here) start it as the caxton user:"
        say "  su -s /bin/sh caxton -c '$BINDIR/caxton service start --config /etc/caxton/caxton.yaml'"
    fi
    say "At its first start the server writes the admin API token to"
    say "  /var/lib/caxton/tokens/admin.token (mode 0600, readable by root and caxton)"
    say "Then check it, as root:"
    say "  $BINDIR/caxton status"
    say "Settings: /etc/caxton/caxton.yaml; check a change with"
    say "  $BINDIR/caxton config validate /etc/caxton/caxton.yaml"
fi
