#!/bin/sh
# The retouchd container's entrypoint. Started as root (the NAS convention), it
#   - makes /config/config.toml from the image's default on the first start (never overwrites),
#     and the state folder /config/state;
#   - hands the token and the dashboard's password to retouchd as credentials (files in
#     $CREDENTIALS_DIRECTORY, readable by retouchd's user only), from a Docker secret
#     (/run/secrets/retouchd_token, /run/secrets/retouchd_web_password), the RETOUCHD_TOKEN and
#     RETOUCHD_WEB_PASSWORD variables (removed from the environment), or /config/token and
#     /config/web-password; a dashboard password is made on the first start when none is given;
#   - runs retouchd as PUID:PGID (never as root) with UMASK, so that what it writes into the
#     photo share belongs to the share's owner.
# Started as another user (`--user 1000:1000`), it sets up what that user may and runs retouchd.
# `health` is the HEALTHCHECK: `retouchd status --health`.
set -eu

# Where the credentials go: root keeps them outside the volumes; another user in its /config.
if [ "$(id -u)" = 0 ]; then creds=/run/retouchd-credentials; else creds=/config/.credentials; fi
export CREDENTIALS_DIRECTORY="$creds"
say() { echo "retouchd-entrypoint: $*" >&2; }
die() { say "$*"; exit 78; }

[ $# -gt 0 ] || set -- run
case "$1" in
    health) exec /usr/bin/retouchd status --health ;;
    -*) set -- run "$@" ;;
esac

PUID="${PUID:-1000}"
PGID="${PGID:-1000}"
UMASK="${UMASK:-022}"
case "$PUID$PGID" in *[!0-9]*) die "PUID and PGID must be numbers (got PUID=$PUID PGID=$PGID)" ;; esac
case "$UMASK" in *[!0-7]*) die "UMASK must be octal, like 022 or 002 (got $UMASK)" ;; esac
[ "$PUID" != 0 ] && [ "$PGID" != 0 ] || die "PUID and PGID must not be 0: retouchd never runs as root; give the share owner's ids"
umask "$UMASK"
export HOME=/config

# The first of: a Docker secret, a variable, a file in /config; written as credential `name`.
credential() { # name secret-file variable-value config-file
    if [ -s "$2" ]; then
        install -m 0400 "$2" "$creds/$1"
    elif [ -n "$3" ]; then
        (umask 077 && printf '%s' "$3" > "$creds/$1")
    elif [ -s "$4" ]; then
        install -m 0400 "$4" "$creds/$1"
    else
        return 1
    fi
}

setup() {
    mkdir -p /config/state
    if [ ! -e /config/config.toml ]; then
        cp /usr/share/retouchd/config.toml /config/config.toml
        if [ -n "${RETOUCHD_SERVER_URL:-}" ]; then
            # A dry run against the simulator (compose.yaml): its address, and its balance route.
            balance="${RETOUCHD_SERVER_URL%%/api/*}/api/retouch/v1/balance"
            sed -i "s|^url = .*|url = \"$RETOUCHD_SERVER_URL\"\nbalance_url = \"$balance\"\nallow_plain_http = true|" /config/config.toml
        fi
        chmod 0600 /config/config.toml
        say "made /config/config.toml (watches /photos/inbox); edit it, then restart the container"
    fi
    mkdir -p -m 0700 "$creds"
    rm -f "$creds/token" "$creds/web-password"
    credential token /run/secrets/retouchd_token "${RETOUCHD_TOKEN:-}" /config/token \
        || say "no token yet: give the Docker secret retouchd_token, RETOUCHD_TOKEN or /config/token"
    if ! credential web-password /run/secrets/retouchd_web_password "${RETOUCHD_WEB_PASSWORD:-}" /config/web-password; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '\n/+=' > /config/web-password)
        credential web-password /nonexistent "" /config/web-password
        say "the dashboard's password was made: it is in /config/web-password (port 8642)"
    fi
    unset RETOUCHD_TOKEN RETOUCHD_WEB_PASSWORD
}

if [ "$(id -u)" = 0 ]; then
    case "$1" in
        demo | sim | --version | -V | --help | -h | help | completions | man) ;;
        *)
            setup
            chown "$PUID:$PGID" /config /config/state /config/config.toml "$creds" "$creds"/* 2>/dev/null || true
            [ ! -e /config/web-password ] || chown "$PUID:$PGID" /config/web-password
            # The photo folders, made as the share's owner where they are missing.
            for d in inbox outbox done failed; do
                [ -d "/photos/$d" ] || setpriv --reuid="$PUID" --regid="$PGID" --clear-groups mkdir -p "/photos/$d" \
                    || say "cannot make /photos/$d as $PUID:$PGID; check the share's owner"
            done
            ;;
    esac
    exec setpriv --reuid="$PUID" --regid="$PGID" --clear-groups --inh-caps=-all --bounding-set=-all \
        -- /usr/bin/retouchd "$@"
fi

# Not root: set up what this user may, then run.
if [ "$1" = run ] || [ "$1" = check ] || [ "$1" = status ]; then
    setup
fi
exec /usr/bin/retouchd "$@"
