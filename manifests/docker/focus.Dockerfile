# syntax=docker/dockerfile:1.7
# The `focus` image: drop-in for jitsi/jicofo (same env vars, TCP 8888 private REST).
# Build from the repository root (the workspace is the context):
#   docker build -f manifests/docker/focus.Dockerfile -t jitsi-rs/focus:0.1.0 .
# focus.Dockerfile.dockerignore, next to this file, is the ignore list BuildKit uses for it.
# Base images are pinned by version tag; pin them by digest in your registry mirror for reproducibility.
#
# Without a registry or a toolchain in the build (CI, air-gapped hosts), give the `build` stage a
# prebuilt binary instead: a named build context replaces the stage of the same name, so the Rust stage
# is skipped and nothing is downloaded (DIR holds out/focus):
#   podman build --build-context build=DIR ...      docker buildx build --build-context build=DIR ...
# manifests/docker/build-local.sh does that, and makes the Debian base image locally with debootstrap.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# Debug info stripped, symbols kept (as in bridge.Dockerfile).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p focus \
    && install -D -m 0755 target/release/focus /out/focus \
    && objcopy --strip-debug /out/focus

FROM debian:12.15-slim
# No shell tools are needed at run time: the health check is a subcommand (`focus healthcheck`).
RUN groupadd --gid 10001 jitsi \
    && useradd --no-log-init --uid 10001 --gid jitsi --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin jitsi
COPY --from=build /out/focus /usr/local/bin/focus
# The health script path of the jitsi/jicofo image (/usr/local/bin/healthcheck.sh), a thin wrapper over
# that subcommand, for probes written for it.
COPY manifests/docker/rootfs/focus/ /
# Like docker-jitsi-meet's jicofo: REST is on 127.0.0.1:8888 unless JICOFO_ENABLE_REST=1 (then on all
# container addresses); JICOFO_REST_HOST overrides both.
ENV LOG_FORMAT=json
EXPOSE 8888/tcp
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/focus", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/focus"]
