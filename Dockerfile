# Padlock container image: one image with every service binary; the command picks the service
#   docker run padlock/padlock padlock-gateway        (also padlock-presence,
#   padlock-message-queue, padlock-key-directory, padlock-notifier, padlock-healthcheck, padlock-admin, and
#   padlock-internal-certs: scripts/lib/internal-certs.sh, the internal CA and certificates)
#
# Targets (stages are ordered so that the classic builder, which builds every stage up to the
# target, never compiles for --target prebuilt):
#   apt-base      Debian bookworm-slim + deploy/image/apt-install (apt with retries)
#   runtime-base  apt-base + the shared libraries the binaries need + user padlock
#   prebuilt      runtime-base + binaries built on the host (CI: no second compile). Context: a
#                 directory holding deploy/prebuilt/padlock-*; deploy/ci-checks.sh prepares it:
#                   docker build --target prebuilt --build-arg PREBUILT=1 -f Dockerfile CTX
#   build         compiles the binaries with Debian's toolchain and libraries
#   runtime       (default, last) runtime-base + the binaries from `build`
#                   docker build -t padlock/padlock .
# Build args: DEBIAN_IMAGE (default debian:bookworm-slim), JOBS (compile jobs, default 2).
ARG DEBIAN_IMAGE=debian:bookworm-slim

# apt with retries (deploy/image/apt-install), for the stages below.
FROM ${DEBIAN_IMAGE} AS apt-base
COPY deploy/image/apt-install /usr/local/bin/

FROM apt-base AS runtime-base
# The Debian packages of the libraries the binaries link directly
# (deploy/image/runtime-packages.sh prints this list for a build directory; the ldd check in each
# final stage catches a gap).
ARG RUNTIME_PACKAGES="libabsl20220623 libgrpc++1.51 libgrpc29 libhiredis0.14 libpqxx-6.4 \
libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprotobuf32 libsignal-protocol-c2.3.2 \
libssl3 libstdc++6 libcurl4 ca-certificates openssl"
RUN apt-install $RUNTIME_PACKAGES \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 padlock \
    && useradd --system --uid 10001 --gid padlock --home-dir /nonexistent --no-create-home \
         --shell /usr/sbin/nologin padlock
COPY deploy/image/padlock-container-healthcheck /usr/local/bin/
# The internal PKI generator (openssl CLI), for compose's one-shot internal-certs service.
COPY scripts/lib/internal-certs.sh /usr/local/bin/padlock-internal-certs
USER 10001:10001
# Readiness of whichever padlock service runs in the container (its gRPC port is found from
# PADLOCK_GRPC_ADDRESS / PADLOCK_GRPC_PORT / the service's default port).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["padlock-container-healthcheck"]
# PADLOCK_SHUTDOWN_GRACE defaults to 20s: stop with a longer timeout
# (compose: stop_grace_period: 30s; docker stop -t 30).
STOPSIGNAL SIGTERM
EXPOSE 7400 7410 7420 7430 9400 9410 9420 9430
CMD ["padlock-gateway"]

FROM runtime-base AS prebuilt
ARG PREBUILT=0
COPY deploy/prebuilt/ /usr/local/bin/
USER root
RUN set -e; rm -f /usr/local/bin/README.md; \
    if [ "$PREBUILT" = 1 ]; then \
      for b in padlock-gateway padlock-presence padlock-message-queue padlock-key-directory \
               padlock-notifier padlock-healthcheck padlock-admin; do \
        test -x "/usr/local/bin/$b" || { echo "missing $b" >&2; exit 1; }; \
      done; \
      if ldd /usr/local/bin/padlock-* | grep 'not found'; then exit 1; fi; \
    fi
USER 10001:10001

FROM apt-base AS build
ARG BUILD_PACKAGES="build-essential cmake ninja-build pkg-config ca-certificates \
libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev \
prometheus-cpp-dev libhiredis-dev libpqxx-dev libpq-dev libsignal-protocol-c-dev libssl-dev \
libsqlite3-dev libsqlcipher-dev libgtest-dev libgmock-dev libbenchmark-dev libnghttp2-dev \
libcurl4-openssl-dev"
# libnghttp2-dev: configuring the tree configures bench/loadgen, which needs it (not the image).
RUN apt-install $BUILD_PACKAGES \
    && rm -rf /var/lib/apt/lists/*
ARG JOBS=2
WORKDIR /src
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    && cmake --build /build -j "$JOBS" --target padlock-gateway padlock-presence \
         padlock-message-queue padlock-key-directory padlock-notifier padlock-healthcheck \
         padlock-admin \
    && mkdir -p /out/bin \
    && find /build -type f -name 'padlock-*' -perm -u+x \
         \( -name padlock-gateway -o -name padlock-presence -o -name padlock-message-queue \
            -o -name padlock-key-directory -o -name padlock-notifier -o -name padlock-healthcheck \
            -o -name padlock-admin \) \
         -exec install -m 0755 -s {} /out/bin/ \; \
    && ls -l /out/bin

FROM runtime-base AS runtime
COPY --from=build /out/bin/ /usr/local/bin/
RUN if ldd /usr/local/bin/padlock-* | grep 'not found'; then exit 1; fi
