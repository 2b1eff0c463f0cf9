# retouchd as a container image, for NAS app stores (Synology Container Manager, Unraid,
# TrueNAS SCALE, Portainer) and docker compose. The README's "Container" section explains it.
#
#   docker build -t retouchd .                                   # builds retouchd inside
#   docker build --build-arg BINARY=prebuilt -t retouchd .       # takes target/release/retouchd
#
# BINARY=prebuilt copies a retouchd built outside (on Debian 12, like the image) instead of
# compiling it: CI tests exactly the runtime stage users get that way, without a Rust image.
ARG BINARY=build

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin retouchd \
    && cp target/release/retouchd /retouchd

FROM scratch AS prebuilt
COPY target/release/retouchd /retouchd

FROM ${BINARY} AS binary

# The CA certificates, made here so that the runtime takes only their bundle (not openssl).
FROM docker.io/library/debian:bookworm-slim AS certs
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates

FROM docker.io/library/debian:bookworm-slim AS runtime
# The service is reached over TLS: the CA bundle. Nothing else is needed: setpriv
# (util-linux), sh and base64 are in the base already.
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary --chmod=0755 /retouchd /usr/bin/retouchd
COPY --chmod=0755 packaging/container/entrypoint.sh /usr/local/bin/retouchd-entrypoint
COPY --chmod=0644 packaging/container/config.toml /usr/share/retouchd/config.toml
ENV PUID=1000 \
    PGID=1000 \
    UMASK=022 \
    CONFIGURATION_DIRECTORY=/config
VOLUME ["/config", "/photos"]
WORKDIR /tmp
EXPOSE 8642
# SIGTERM: the daemon stops taking new work, journals where each job is and exits; jobs at the
# server are picked up at the next start (give it `stop_grace_period: 30s`).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/retouchd-entrypoint", "health"]
ENTRYPOINT ["/usr/local/bin/retouchd-entrypoint"]
CMD ["run"]
