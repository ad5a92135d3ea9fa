# nginx for the compose tests where Docker Hub's nginx image cannot be pulled: Debian's nginx-light
# (and wget, for the proxy's compose health check) on the local Debian base (docker_engine.py).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/*
CMD ["nginx", "-g", "daemon off;"]
