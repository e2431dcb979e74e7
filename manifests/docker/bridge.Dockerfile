# syntax=docker/dockerfile:1.7
# The `bridge` image: drop-in for jitsi/jvb (same env vars, UDP 10000 media, TCP 8080 private REST).
# Build from the repository root (the workspace is the context):
#   docker build -f manifests/docker/bridge.Dockerfile -t jitsi-rs/bridge:0.1.0 .
# bridge.Dockerfile.dockerignore, next to this file, is the ignore list BuildKit uses for it.
# Base images are pinned by version tag; pin them by digest in your registry mirror for reproducibility.
#
# Without a registry or a toolchain in the build (CI, air-gapped hosts), give the `build` stage a
# prebuilt binary instead: a named build context replaces the stage of the same name, so the Rust stage
# is skipped and nothing is downloaded (DIR holds out/bridge):
#   podman build --build-context build=DIR ...      docker buildx build --build-context build=DIR ...
# manifests/docker/build-local.sh does that, and makes the Debian base image locally with debootstrap.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of the cache.
# Debug info (≈ 35 MB of the 46 MB release binary) is stripped; symbols stay, so a panic's
# backtrace still names functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p bridge \
    && install -D -m 0755 target/release/bridge /out/bridge \
    && objcopy --strip-debug /out/bridge

FROM debian:12.15-slim
# No shell tools are needed at run time: health checks and graceful shutdown are subcommands of the
# binary itself (`bridge healthcheck`, `bridge graceful-shutdown --wait`), so no curl, no jq.
RUN groupadd --gid 10001 jitsi \
    && useradd --no-log-init --uid 10001 --gid jitsi --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin jitsi
COPY --from=build /out/bridge /usr/local/bin/bridge
# The script paths of the jitsi/jvb image, as thin wrappers over those subcommands, for hooks and probes
# written for it: /usr/share/jitsi-videobridge/graceful_shutdown.sh, /usr/local/bin/healthcheck.sh.
COPY manifests/docker/rootfs/bridge/ /
# docker-jitsi-meet's jvb listens for REST on all container addresses and publishes it on the host's
# 127.0.0.1:8080 only; do the same. Kubernetes overrides JVB_REST_HOST (see manifests/base/shard/bridge.yaml).
ENV JVB_PORT=10000 \
    JVB_REST_HOST=0.0.0.0 \
    JVB_REST_PORT=8080 \
    LOG_FORMAT=json
EXPOSE 10000/udp 8080/tcp
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/bridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/bridge"]
