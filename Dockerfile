# syntax=docker/dockerfile:1
# The chatsender daemon: built from source in one stage, run from a small Debian
# image as an unprivileged user in the next (about 40 MB).
#
#   docker build -t chatsender .
#   docker run --rm -v ./config.yaml:/etc/chatsender/config.yaml:ro,Z chatsender check-config
#
# The config is /etc/chatsender/config.yaml (CHATSENDER_CONFIG); every key can also
# come from the environment as CHATSENDER__SECTION__KEY. State that must be kept (a
# SQLite database, in the embedded mode) goes to /var/lib/chatsender, a volume.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs link-order.txt ./
COPY src src
COPY migrations migrations
# The registry and target directory are cached between builds; the binary is copied
# out of the cache mount so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chatsender \
    && cp target/release/chatsender /usr/local/bin/chatsender

FROM debian:bookworm-20261005-slim
# rustls checks certificates against the system's roots (an https homeserver).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/chatsender /usr/local/bin/chatsender
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/chatsender --create-home \
      --shell /usr/sbin/nologin chatsender \
    && mkdir -p /etc/chatsender
USER 10001:10001
WORKDIR /var/lib/chatsender
ENV CHATSENDER_CONFIG=/etc/chatsender/config.yaml
EXPOSE 8000
VOLUME ["/var/lib/chatsender"]
ENTRYPOINT ["/usr/local/bin/chatsender"]
CMD ["serve"]
