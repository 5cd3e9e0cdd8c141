# syntax=docker/dockerfile:1
#
# The operator image: a static binary on distroless, running as UID 65532.
#
#   docker build -t ghcr.io/vault-connection-operator/vault-connection-operator:0.1.0 .
#
# The binary is built for x86_64-unknown-linux-musl, so it needs no libc at run time and the
# final image holds nothing but the binary, CA certificates and /etc/passwd. Only linux/amd64 is
# built; for arm64, build on an arm64 host with TARGET=aarch64-unknown-linux-musl.

FROM rust:1-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-tools: the C compiler for musl (aws-lc-sys, the TLS crypto, is C); cmake and perl in case
# aws-lc-sys falls back to its CMake build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake perl \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$TARGET"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artefacts between builds (BuildKit); the binary is
# copied out of the cached target directory because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$TARGET" --bin vault-connection-operator \
 && mkdir -p /out \
 && cp "target/$TARGET/release/vault-connection-operator" /out/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vault-connection-operator /vault-connection-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vault-connection-operator"]
CMD ["run"]
