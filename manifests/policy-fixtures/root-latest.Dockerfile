# expect: is not pinned
# Single stage, :latest base, runs as root, curl-based health check.
FROM rust:latest
COPY . /src
RUN cargo build --release -p bridge
HEALTHCHECK CMD curl -f http://127.0.0.1:8080/about/health
ENTRYPOINT ["/src/target/release/bridge"]
