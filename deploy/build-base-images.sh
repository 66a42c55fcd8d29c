#!/usr/bin/env bash
# Builds local stand-ins for the public images docker-compose.yml uses, for machines whose Docker
# engine cannot pull from a registry. Idempotent and cached: an image that already exists (under
# its official name, whoever built it) is left alone, and the debootstrap tarball is kept.
#
#   deploy/build-base-images.sh            build what is missing
#   deploy/build-base-images.sh --force    rebuild every stand-in (re-uses the cached rootfs)
#
# Images (tag = the official name, so the same docker-compose.yml runs unchanged elsewhere):
#   debian:bookworm-slim   debootstrap --variant=minbase of Debian 12, `docker import`ed
#   redis:7                Debian's redis-server          (deploy/standins/redis)
#   postgres:15            Debian's postgresql-15         (deploy/standins/postgres)
#   prom/prometheus        Debian's prometheus (+promtool) (deploy/standins/prometheus)
#   haproxy:2.6            Debian's haproxy               (deploy/standins/haproxy)
#   oliver006/redis_exporter:v1.45.0             Debian's prometheus-redis-exporter
#   prometheuscommunity/postgres-exporter:v0.11.1 Debian's prometheus-postgres-exporter
# Each stand-in carries the label org.padlock.standin=true; see docs/DEPLOY.md for how they
# differ from the official images.
#
# Environment:
#   PADLOCK_DEBIAN_MIRROR  mirror for debootstrap (default: the first Debian mirror of this
#                          machine's apt sources; never hard-coded)
#   PADLOCK_IMAGE_CACHE    where the rootfs tarball is kept (default /var/cache/padlock-images)
set -euo pipefail
# shellcheck source=scripts/lib/retry.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/retry.sh"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PADLOCK_IMAGE_CACHE:-/var/cache/padlock-images}"
SUITE=bookworm
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf '[base-images] %s\n' "$*"; }
die() { printf '[base-images] error: %s\n' "$*" >&2; exit 1; }
have_image() { [ "$FORCE" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers"

# Prints "URI" of the first apt source (deb822 *.sources or one-line *.list) that serves $SUITE
# from a non-security archive.
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris !~ /security/) {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        types = ""; uris = ""; suites = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/  { sub(/^Types:[[:space:]]*/, "");  types = $0 }
      /^URIs:/   { sub(/^URIs:[[:space:]]*/, "");   uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { if (!found) flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /security/ {
        i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' "$f"
  done
}

build_debian() {
  local tag=debian:bookworm-slim
  if have_image "$tag"; then log "$tag present (skipped)"; return; fi
  local tarball="$CACHE/debian-$SUITE-minbase.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || {
      log "installing debootstrap"
      $SUDO apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
        { retry 5 $SUDO apt-get -o Acquire::Retries=3 update -q >/dev/null &&
          retry 5 $SUDO apt-get -o Acquire::Retries=3 install -y -q --no-install-recommends \
            debootstrap >/dev/null; }
    }
    local mirror="${PADLOCK_DEBIAN_MIRROR:-$(host_mirror | head -n1)}"
    [ -n "$mirror" ] ||
      die "no Debian $SUITE mirror in this machine's apt sources; set PADLOCK_DEBIAN_MIRROR"
    log "debootstrap --variant=minbase $SUITE from $mirror"
    local root
    root="$(mktemp -d /var/tmp/padlock-rootfs.XXXXXX)"
    # shellcheck disable=SC2064
    trap "$SUDO rm -rf '$root'" EXIT
    # A failed debootstrap leaves a partial tree: each try starts from an empty directory.
    debootstrap_once() {
      $SUDO find "$root" -mindepth 1 -delete 2>/dev/null || true
      $SUDO debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$root.log" 2>&1
    }
    retry 3 debootstrap_once ||
      { tail -n 30 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
    # The same apt sources as this machine (main archive, updates, security), as deb822.
    $SUDO rm -f "$root/etc/apt/sources.list"
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
      cat /etc/apt/sources.list.d/*.sources |
        $SUDO tee "$root/etc/apt/sources.list.d/debian.sources" >/dev/null
    else
      printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" |
        $SUDO tee "$root/etc/apt/sources.list" >/dev/null
    fi
    # Like the official slim image: no docs/man pages from later installs, apt caches cleaned.
    $SUDO tee "$root/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
    $SUDO tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Binary::apt::APT::Keep-Downloaded-Packages "false";
Acquire::GzipIndexes "true";
CFG
    # apt in every image built on this one retries each download (the Dockerfiles also retry
    # whole apt runs, for images built on the official debian image).
    echo 'Acquire::Retries "3";' | $SUDO tee "$root/etc/apt/apt.conf.d/80-retries" >/dev/null
    $SUDO rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
      "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/*
    $SUDO mkdir -p "$CACHE"
    $SUDO tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    $SUDO mv "$tarball.tmp" "$tarball"
    $SUDO rm -rf "$root" "$root.log"
    trap - EXIT
  else
    log "using cached rootfs $tarball"
  fi
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change 'LABEL org.padlock.standin=true' \
    "$tarball" "$tag" >/dev/null
  log "$tag imported"
}

# A stand-in is rebuilt when its directory changed (content hash in a label); an image of that
# name without the stand-in label (pulled from a registry) is never touched.
build_standin() {  # tag dir
  local dir="$HERE/standins/$2" hash have
  hash="$(cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if have_image "$1"; then
    have="$(docker image inspect -f \
      '{{index .Config.Labels "org.padlock.standin"}} {{index .Config.Labels "org.padlock.standin.hash"}}' \
      "$1" 2>/dev/null || true)"
    case "$have" in
      "true $hash") log "$1 present (skipped)"; return ;;
      true*) log "$1 is a stand-in of other sources (${have#true }); rebuilding" ;;
      *) log "$1 present, not a stand-in (skipped)"; return ;;
    esac
  fi
  log "building $1 from $2"
  local out; out="$(mktemp)"
  # The build's apt steps retry themselves; a whole failed build (a mirror down for longer) is
  # tried again too.
  if ! retry 3 docker build --label "org.padlock.standin.hash=$hash" -t "$1" "$dir" >"$out" 2>&1
  then
    tail -n 40 "$out" >&2; rm -f "$out"; die "building $1 failed"
  fi
  rm -f "$out"
  log "$1 built"
}

export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
build_debian
build_standin redis:7 redis
build_standin postgres:15 postgres
build_standin prom/prometheus prometheus
build_standin haproxy:2.6 haproxy
build_standin oliver006/redis_exporter:v1.45.0 redis-exporter
build_standin prometheuscommunity/postgres-exporter:v0.11.1 postgres-exporter
log "done"
