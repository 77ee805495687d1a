#!/usr/bin/env bash
# `make image`: the pipeline image (docker/Dockerfile) built with buildah, on machines without Docker
# and without a reachable container registry.
#
# 1. podman, buildah, mmdebstrap and runc from Debian when missing (as root with apt-get, as
#    scripts/install_browser.sh does for Chromium); elsewhere it says what to install and stops.
# 2. The base, debian:bookworm-slim, once: made by mmdebstrap from Debian's mirror (the variant and
#    dpkg path exclusions of the official slim image) and tagged with the name the Dockerfile uses, so
#    the Dockerfile is the one `docker build` uses in the wild. ECOMKPI_BASE_FROM=pull pulls it instead.
# 3. The image, with buildah's layer cache: an unchanged tree rebuilds in seconds, a change of the
#    project's code re-runs only its install (the class archive comes from a cache mount).
# 4. Its size and the build time.
#
# --if-possible (what `make test` runs): where the tools are missing and cannot be installed (not root,
# no apt-get), say so and exit 0; the container tests then report themselves skipped.
#
# Settings: ECOMKPI_IMAGE (default localhost/ecomkpi:dev); ECOMKPI_EXTRA_CA, a CA bundle given to the
# build as the optional secret extra_ca for Maven and pip (default: the host's
# /etc/ssl/certs/ca-certificates.crt, needed where outbound TLS is re-signed by a proxy; empty: none).
# podman/buildah read docker/containers.conf (CONTAINERS_CONF): runc, cgroupfs, accepted ulimits.
set -euo pipefail
optional=0
[ "${1:-}" = "--if-possible" ] && optional=1
# One build at a time (CI starts one early, `make test` asks again): the second finds the layers built.
exec 9>"${TMPDIR:-/tmp}/ecomkpi-image-build.lock"
flock 9
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${ECOMKPI_IMAGE:-localhost/ecomkpi:dev}"
base="docker.io/library/debian:bookworm-slim"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/docker/containers.conf}"

missing=()
for tool in podman buildah mmdebstrap runc; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "image: installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah mmdebstrap runc >/dev/null
  else
    echo "image: install podman buildah mmdebstrap runc (e.g. sudo apt-get install podman buildah mmdebstrap runc)" >&2
    [ "$optional" = 1 ] && echo "image: not built; the container tests will be skipped" && exit 0
    exit 1
  fi
fi

if podman image exists "$base"; then
  echo "image: base $base present"
elif [ "${ECOMKPI_BASE_FROM:-mmdebstrap}" = "pull" ]; then
  podman pull "$base"
else
  started=$(date +%s)
  work="$(mktemp -d "${TMPDIR:-/var/tmp}/ecomkpi-base.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "image: building the base $base with mmdebstrap (once)"
  mirror="http://deb.debian.org/debian"
  # The official slim image: minbase, no recommends, and no docs/man/locales written by dpkg.
  mmdebstrap --quiet --variant=minbase --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    bookworm "$work/rootfs.tar" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  podman import --quiet --change 'CMD ["bash"]' "$work/rootfs.tar" "$base" >/dev/null
  echo "image: base built in $(($(date +%s) - started)) s"
fi

ca="${ECOMKPI_EXTRA_CA-/etc/ssl/certs/ca-certificates.crt}"
secret=()
if [ -n "$ca" ] && [ -s "$ca" ]; then
  secret=(--secret "id=extra_ca,src=$ca")
fi
started=$(date +%s)
echo "image: building $image (buildah, layer cache)"
log="${TMPDIR:-/tmp}/ecomkpi-image-build.log"
if ! buildah bud --isolation chroot --format docker --layers "${secret[@]}" \
  -f "$root/docker/Dockerfile" -t "$image" "$root" >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "image: build failed (the whole output: $log)" >&2
  exit 1
fi
seconds=$(($(date +%s) - started))
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image: $image built in ${seconds} s, $((size / 1000000)) MB ($(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12))"
