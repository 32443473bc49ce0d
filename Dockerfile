# Herald as a container image: built from source, run as a non-root user in a distroless image
# (glibc and CA certificates, no shell: about 35 MB).
#
#   docker build -t herald .
#   docker run --rm -p 8080:8080 -e HERALD_API_KEY=$(openssl rand -hex 24) \
#     -e HERALD_JWT_SECRET=$(openssl rand -hex 32) -v herald-data:/var/lib/herald herald
#
# Every HERALD_* variable works as `-e`; a whole file with `-v ./herald.toml:/etc/herald/herald.toml:ro`
# and `serve --config /etc/herald/herald.toml`. Check a configuration with
# `docker run --rm -e ... herald check-config`. Three nodes, Redis and nginx: docker-compose.yml.
# See docs/DEPLOY.md.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directory are cache mounts: a rebuild after a source change recompiles
# only Herald's crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald-server \
    && cp target/release/herald /usr/local/bin/herald
# The data directory, owned by the image's non-root user (distroless `nonroot` is 65532).
RUN mkdir -p /data && chown 65532:65532 /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/herald /usr/local/bin/herald
COPY --from=build --chown=65532:65532 /data /var/lib/herald
USER 65532:65532
WORKDIR /var/lib/herald
# In a container, listen on every interface; the SQLite store lives in the volume.
ENV HERALD_LISTEN=0.0.0.0:8080 \
    HERALD_STORE_PATH=/var/lib/herald/herald.db
VOLUME ["/var/lib/herald"]
EXPOSE 8080
# No HEALTHCHECK: the image has no shell or curl. Probe GET /readyz (and /healthz) over HTTP from the
# orchestrator (a Kubernetes httpGet probe, or nginx's max_fails as in docker-compose.yml).
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["serve"]
