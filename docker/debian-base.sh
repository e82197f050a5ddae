#!/bin/sh
# A Debian 12 base image with Python 3.11, made on this host where no registry serves one (an air gap, or a host
# that reaches only a Debian mirror): debootstrap, then `docker import`. Its Python is Debian's 3.11: python3, the
# venv module and libpython3.11, which is what docker/Dockerfile.cpu needs of BASE_IMAGE.
#
#   docker/debian-base.sh [IMAGE]          (default yolo-debian-python:bookworm; nothing is done when it exists)
#   DOCKER_BUILDKIT=1 docker build --build-arg BASE_IMAGE=yolo-debian-python:bookworm -f docker/Dockerfile.cpu ...
#
# Needs root and debootstrap (Debian's package). DEBIAN_MIRROR: the mirror (default http://deb.debian.org/debian).
# DOCKER: the docker CLI (default docker).
set -eu
image=${1:-yolo-debian-python:bookworm}
docker=${DOCKER:-docker}
if "$docker" image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,libpython3.11 bookworm "$root" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | "$docker" import --change 'CMD ["/bin/bash"]' - "$image"
