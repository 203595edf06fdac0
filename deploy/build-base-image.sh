#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim where no image registry can be reached.
#
# Debian bookworm (whose python3 is 3.11) is debootstrapped from the mirror this host's own apt
# sources name, given this host's CA bundle and pip config so that pip inside `docker build`
# reaches PyPI exactly as the host does (including through a TLS-inspecting proxy), and
# imported as a Docker image. Idempotent: does nothing when the image already exists.
#
# Usage: deploy/build-base-image.sh [IMAGE]        (default cnn-explorer-base:bookworm)
# Then:  docker build --build-arg BASE_IMAGE=cnn-explorer-base:bookworm .
set -euo pipefail

IMAGE="${1:-cnn-explorer-base:bookworm}"
SUITE=bookworm # its python3 is 3.11, the version pyproject.toml and the Dockerfile expect
PACKAGES=python3,python3-venv,python3-pip,ca-certificates
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

log() { printf 'build-base-image: %s\n' "$*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists; nothing to do (docker rmi $IMAGE to rebuild)"
    exit 0
fi

# The first mirror that the host's apt sources list for $SUITE itself (not -security/-updates),
# from deb822 *.sources files or one-line *.list files.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (is_deb && has_suite && uri != "") { print uri; found = 1; exit }
                is_deb = 0; has_suite = 0; uri = ""
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") is_deb = 1 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
            tolower($1) == "uris:" { uri = $2 }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # "deb [options] URI SUITE COMPONENTS..."; the options field is optional.
        sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
    done
}

MIRROR="$(debian_mirror | head -n 1)"
if [ -z "$MIRROR" ]; then
    log "no '$SUITE' entry in /etc/apt/sources.list or /etc/apt/sources.list.d/; cannot pick a mirror"
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi

ROOTFS="$(mktemp -d /var/tmp/cnn-explorer-base.XXXXXX)"
DEBOOTSTRAP_LOG="$(mktemp /var/tmp/cnn-explorer-base-debootstrap.XXXXXX.log)"
cleanup() { $SUDO rm -rf "$ROOTFS" "$DEBOOTSTRAP_LOG"; }
trap cleanup EXIT

log "debootstrap $SUITE from $MIRROR (about a minute)"
if ! $SUDO debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$DEBOOTSTRAP_LOG" 2>&1; then
    tail -30 "$DEBOOTSTRAP_LOG" >&2
    log "debootstrap failed; its last lines are above"
    exit 1
fi

# pip in the image must trust what the host trusts: a TLS-inspecting proxy signs with a CA that
# only the host's bundle holds.
if [ -r "$HOST_CA_BUNDLE" ]; then
    $SUDO cp "$HOST_CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
# The host's site-wide pip config (e.g. `cert = ...`); per-user configs name host-only paths.
if [ -r /etc/pip.conf ]; then
    $SUDO cp /etc/pip.conf "$ROOTFS/etc/pip.conf"
fi
# docker-smoke.sh passes the host's PIP_CERT through as a build arg, so the path must exist here.
if [ -n "${PIP_CERT:-}" ] && [ -r "$PIP_CERT" ] && [ ! -e "$ROOTFS$PIP_CERT" ]; then
    $SUDO mkdir -p "$ROOTFS$(dirname "$PIP_CERT")"
    $SUDO cp "$PIP_CERT" "$ROOTFS$PIP_CERT"
fi

# Like the slim images: no package caches, lists, docs or manuals.
$SUDO rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*

log "importing as $IMAGE"
$SUDO tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES from $MIRROR" \
    - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
