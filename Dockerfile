# gadosynth BIDS App image: docker build -t gadosynth:$(cat version) .
# Runs as a non-root user and works with --read-only: it writes only to the mounted output
# folder (and --work_dir if given); HOME and caches point at folders the app redirects itself.
# BASE: the CUDA runtime image users need; any Debian/Ubuntu image with apt works for a CPU-only
# build (CI builds on a local Debian bookworm made by debootstrap: no registry is reachable).
ARG BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
# hadolint ignore=DL3006
FROM ${BASE}

ARG VERSION=0.7.1
LABEL org.opencontainers.image.title="gadosynth" \
      org.opencontainers.image.description="BIDS App: synthetic non-contrast T1w from gadolinium-enhanced T1w" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    GADOSYNTH_CONTAINER=docker \
    GADOSYNTH_IMAGE="gadosynth:${VERSION}"

# Ubuntu's python3 is the one fixed by the base image tag; pinning apt versions would break on
# every security update of that tag.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /opt/gadosynth
COPY pyproject.toml README.md version run.py ./
COPY gado_bids ./gado_bids
# torch from PyPI brings its own CUDA libraries; the base image supplies the driver interface.
# PIP_OPTIONS: extra pip options, e.g. "--extra-index-url https://download.pytorch.org/whl/cpu"
# or a local wheel folder mounted into the build, for a CPU-only image.
ARG PIP_OPTIONS=""
# hadolint ignore=SC2086
RUN pip install --no-compile ${PIP_OPTIONS} . \
    && python -c "import gado_bids.preprocessing.template as t; t.template_t1()" \
    && useradd --create-home --uid 1000 gadosynth

USER 1000:1000
ENTRYPOINT ["python3", "/opt/gadosynth/run.py"]
CMD ["--help"]
