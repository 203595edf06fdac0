#!/usr/bin/env bash
# `make docker-smoke`: build the image, run it, wait for its HEALTHCHECK, and drive the real API
# once (POST /api/v1/forward with a generated PNG, then GET one layer's PNG), then one training
# step shared with a worker process inside the container. Needs root: it may
# apt-get install docker.io and start dockerd (stopped again at the end, only if started here).
#
# Where python:3.11-slim cannot be pulled, it builds a stand-in base (deploy/build-base-image.sh).
# The build reaches the network only for PyPI (and Debian, for that stand-in), configured as
# this host is: its proxy variables and its pip index, CA and timeout settings are passed on.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    exec sudo -E bash "$0" "$@"
fi

cd "$(dirname "$0")/.."

IMAGE=cnn-explorer:smoke
PULLED_BASE=python:3.11-slim
STANDIN_BASE=cnn-explorer-base:bookworm
NAME="cnn-explorer-smoke-$$"

WORK="$(mktemp -d /tmp/cnn-explorer-smoke.XXXXXX)"
DOCKERD_PID=""
CONTAINER=""

say() { printf 'docker-smoke: %s\n' "$*"; }
fail() {
    say "FAILED: $*" >&2
    if [ -n "$CONTAINER" ]; then
        say "container log (last 30 lines):" >&2
        docker logs --tail 30 "$CONTAINER" >&2 2>&1 || true
    fi
    exit 1
}

cleanup() {
    if [ -n "$CONTAINER" ]; then
        docker rm -f --volumes "$CONTAINER" >/dev/null 2>&1 || true  # and its anonymous /data
    fi
    if [ -n "$DOCKERD_PID" ]; then
        say "stopping the dockerd started here (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- docker: installed and a daemon answering ---------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io with apt-get"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io
fi
if ! docker info >/dev/null 2>&1; then
    say "no Docker daemon answers; starting dockerd (log: $WORK/dockerd.log)"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log" >&2; fail "dockerd exited"; }
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || fail "dockerd did not answer within 30 s"
fi
# Without the buildx plugin (Debian's docker.io has none), use the classic builder explicitly.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

# ---- base image ----------------------------------------------------------------------------
if timeout 30 docker pull -q "$PULLED_BASE" >/dev/null 2>&1; then
    BASE="$PULLED_BASE"
else
    say "cannot pull $PULLED_BASE; using the stand-in base $STANDIN_BASE"
    bash deploy/build-base-image.sh "$STANDIN_BASE"
    BASE="$STANDIN_BASE"
fi

# ---- build, with the host's way to the registries -------------------------------------------
build_args=(--build-arg "BASE_IMAGE=$BASE")
network_args=()
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    value="${!var:-}"
    [ -n "$value" ] || continue
    build_args+=(--build-arg "$var=$value")
    # A proxy on the host's loopback is reachable from the build only on the host's network.
    case "$value" in
        *://127.* | *://localhost* | *://\[::1\]*) network_args=(--network host) ;;
    esac
done

# A pip setting from the environment, else from the host's pip config; "" when neither.
host_pip_setting() {
    local env_name="$1" key="$2"
    if [ -n "${!env_name:-}" ]; then
        printf '%s' "${!env_name}"
    elif command -v python3 >/dev/null 2>&1; then
        python3 -m pip config get "global.$key" 2>/dev/null || true
    fi
}
# Only network locations mean anything inside the build: file:// URLs and paths are host-only.
network_urls() { tr -s '[:space:]' '\n' | grep -E '^https?://' | paste -sd ' ' || true; }

index_url="$(host_pip_setting PIP_INDEX_URL index-url | network_urls)"
extra_index_url="$(host_pip_setting PIP_EXTRA_INDEX_URL extra-index-url | network_urls)"
trusted_host="$(host_pip_setting PIP_TRUSTED_HOST trusted-host)"
[ -z "$index_url" ] || build_args+=(--build-arg "PIP_INDEX_URL=$index_url")
[ -z "$extra_index_url" ] || build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index_url")
[ -z "$trusted_host" ] || build_args+=(--build-arg "PIP_TRUSTED_HOST=$trusted_host")
[ -z "${PIP_DEFAULT_TIMEOUT:-}" ] || build_args+=(--build-arg "PIP_DEFAULT_TIMEOUT=$PIP_DEFAULT_TIMEOUT")
# The stand-in base carries the host's CA bundle and PIP_CERT file at the same paths.
if [ "$BASE" = "$STANDIN_BASE" ] && [ -n "${PIP_CERT:-}" ]; then
    build_args+=(--build-arg "PIP_CERT=$PIP_CERT")
fi

say "building $IMAGE from $BASE (log: $WORK/build.log)"
build_start=$SECONDS
if ! docker build "${network_args[@]}" "${build_args[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log" >&2
    fail "docker build"
fi
build_seconds=$((SECONDS - build_start))
image_mb="$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f", $1 / 1e6 }')"

# ---- run and wait for the image's own HEALTHCHECK --------------------------------------------
# The image checks every 30 s; here the same check runs every 2 s so the smoke test is quick.
CONTAINER="$(docker run -d --name "$NAME" -p 127.0.0.1::8000 --health-interval 2s "$IMAGE")"
HOSTPORT="$(docker port "$CONTAINER" 8000/tcp | head -n 1)"
BASE_URL="http://$HOSTPORT"
say "started $NAME on $BASE_URL; waiting for the HEALTHCHECK"
run_start=$SECONDS
health=""
while [ $((SECONDS - run_start)) -lt 90 ]; do
    state="$(docker inspect -f '{{.State.Status}}' "$CONTAINER")"
    [ "$state" = running ] || fail "container is $state"
    health="$(docker inspect -f '{{.State.Health.Status}}' "$CONTAINER")"
    [ "$health" = healthy ] && break
    [ "$health" = unhealthy ] && fail "HEALTHCHECK reports unhealthy"
    sleep 1
done
[ "$health" = healthy ] || fail "not healthy after 90 s (health: $health)"
health_seconds=$((SECONDS - run_start))
health_body="$(curl -fsS --noproxy '*' "$BASE_URL/api/v1/health")" || fail "GET /api/v1/health"
whoami_in="$(docker exec "$CONTAINER" id -un):$(docker exec "$CONTAINER" id -u)"
docker exec "$CONTAINER" sh -c 'touch "$CNN_EXPLORER_DATA_DIR/.smoke" && rm "$CNN_EXPLORER_DATA_DIR/.smoke"' \
    || fail "the data volume is not writable by $whoami_in"

# ---- the page: templates/ and static/ found beside app/ ---------------------------------------
page_reply="$(curl -sS --noproxy '*' -o "$WORK/index.html" -w '%{http_code} %{content_type}' \
    "$BASE_URL/")" || fail "GET / did not complete"
[ "${page_reply%% *}" = 200 ] || fail "GET / gave $page_reply: $(head -c 300 "$WORK/index.html")"
static_path="$(grep -oE '/static/[^"'"'"' )>]+' "$WORK/index.html" | head -n 1 || true)"
[ -n "$static_path" ] || fail "the page links no /static/ file"
static_reply="$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code}' "$BASE_URL$static_path")" \
    || fail "GET $static_path did not complete"
[ "$static_reply" = 200 ] || fail "GET $static_path gave $static_reply"

# ---- one real forward pass -------------------------------------------------------------------
python3 - "$WORK/input.png" <<'EOF'
"""A 32x32 RGB gradient PNG from the standard library alone (no Pillow on the host needed)."""
import struct
import sys
import zlib

w = h = 32
rows = b"".join(
    b"\x00" + bytes(v for x in range(w) for v in (x * 8, y * 8, 255 - x * 4)) for y in range(h)
)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


with open(sys.argv[1], "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
    f.write(chunk(b"IDAT", zlib.compress(rows)))
    f.write(chunk(b"IEND", b""))
EOF
cat >"$WORK/network.json" <<'EOF'
{"input": {"height": 32, "width": 32, "channels": 3}, "seed": 0,
 "layers": [{"type": "conv", "filters": 4, "kernel_size": 3, "padding": 1, "activation": "relu"},
            {"type": "maxpool", "size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 3, "activation": "softmax"}]}
EOF
status="$(curl -sS --noproxy '*' -o "$WORK/forward.json" -w '%{http_code}' \
    -F "image=@$WORK/input.png;type=image/png" -F "network=<$WORK/network.json" \
    "$BASE_URL/api/v1/forward")" || fail "POST /api/v1/forward did not complete"
[ "$status" = 200 ] || fail "POST /api/v1/forward gave $status: $(head -c 500 "$WORK/forward.json")"
# run_id, layer count, output shape and layer 0's grid URL, or exit 1 when any is missing.
read -r run_id n_layers last_shape grid_url < <(python3 - "$WORK/forward.json" <<'EOF' || true
import json
import sys

reply = json.load(open(sys.argv[1]))
layers = reply["layers"]
shape = "x".join(str(n) for n in layers[-1]["output_shape"])
print(reply["run_id"], len(layers), shape, layers[0]["grid_url"])
EOF
)
[ -n "${grid_url:-}" ] || fail "forward reply lacks run_id/layers/grid_url: $(head -c 500 "$WORK/forward.json")"
case "$grid_url" in
    http://* | https://*) layer_url="$grid_url" ;;
    *) layer_url="$BASE_URL$grid_url" ;;
esac
layer_reply="$(curl -sS --noproxy '*' -o "$WORK/layer0.png" -w '%{http_code} %{content_type}' \
    "$layer_url")" || fail "GET $grid_url did not complete"
[ "${layer_reply%% *}" = 200 ] || fail "GET $grid_url gave $layer_reply"
png_size="$(python3 - "$WORK/layer0.png" <<'EOF'
import struct
import sys

data = open(sys.argv[1], "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"not a PNG: {data[:16]!r}")
width, height = struct.unpack(">II", data[16:24])
print(f"{width}x{height} px, {len(data)} bytes")
EOF
)" || fail "layer 0 image: $png_size"

# ---- a training step shared with a worker process (its memory in the container's /dev/shm) ----
training="$(docker exec "$CONTAINER" python -c '
import numpy as np
from app.cnn.network import build_network
from app.learning.parallel import DataParallel
from app.learning.recipes import RECIPES
net = DataParallel(build_network(RECIPES["digits"].spec), 2)
rng = np.random.default_rng(0)
loss, _ = net.loss_and_backward(rng.random((32, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 32))
print(net.mode, len(net.pids), f"loss {loss:.3f}")
net.close()
' 2>&1)" || fail "training step in the container: $training"
case "$training" in
    "processes 1 loss "*) ;;
    *) fail "training step did not share the batch with a worker process: $training" ;;
esac

say "OK"
cat <<EOF
  image      $IMAGE: ${image_mb} MB, base $BASE, built in ${build_seconds} s
  container  healthy after ${health_seconds} s on $BASE_URL, running as $whoami_in, /data writable
  health     $health_body
  page       / -> $page_reply, $(wc -c <"$WORK/index.html") bytes; $static_path -> $static_reply
  forward    200, run_id $run_id, $n_layers layers, last output $last_shape
  layer 0    $grid_url -> $layer_reply, $png_size
  training   a digits step with a worker process: $training
EOF
