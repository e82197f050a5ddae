#!/bin/sh
# docker/Dockerfile.builder and docker/Dockerfile.server, built unchanged on stand-ins for their NGC bases
# (docker/ngc-standin/Dockerfile), where nvcr.io cannot be reached. Every step that needs no CUDA runs: the
# release's pins and constraint handling, the project's install with the image's torch (builder) or PyPI's CUDA
# torch (server) and numpy 1, the import checks, nginx, the user, the entrypoint. About 10 GB of downloads
# (two CUDA builds of torch): a check run by hand, not by `make test`.
#
#   docker/ngc-standin/build.sh        (as root; needs debootstrap, an Ubuntu mirror and PyPI)
#
# UBUNTU_MIRROR: default http://archive.ubuntu.com/ubuntu. DOCKER: the docker CLI with BuildKit (default docker).
set -eu
cd "$(dirname "$0")/../.."
docker=${DOCKER:-docker}
base=yolo-ubuntu-python:noble
secret=""
[ ! -f /etc/ssl/certs/ca-certificates.crt ] || secret="--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt"
if ! "$docker" image inspect "$base" >/dev/null 2>&1; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    # Ubuntu 24.04 from Debian's debootstrap: the gutsy script serves every later Ubuntu release
    debootstrap --variant=minbase --no-check-gpg --components=main,universe \
        --include=python3,python3-venv,python3-pip,python3-numpy,python-is-python3 \
        noble "$root" "${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}" /usr/share/debootstrap/scripts/gutsy >&2
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | "$docker" import --change 'CMD ["/bin/bash"]' - "$base"
fi
build() {  # NAME DOCKERFILE CONTEXT [ARGS...]
    name=$1 file=$2 context=$3
    shift 3
    started=$(date +%s)
    # shellcheck disable=SC2086  # $secret: two words or none
    DOCKER_BUILDKIT=1 "$docker" build --network host --progress plain $secret -f "$file" -t "$name" "$@" "$context"
    echo "built $name in $(($(date +%s) - started)) s: $("$docker" image inspect --format '{{.Size}}' "$name") bytes"
}
build yolo-ngc-standin:tritonserver docker/ngc-standin/Dockerfile docker/ngc-standin --target tritonserver
build yolo-ngc-standin:pytorch docker/ngc-standin/Dockerfile docker/ngc-standin --target pytorch
build yolo-triton-builder:standin docker/Dockerfile.builder . --build-arg BASE_IMAGE=yolo-ngc-standin:pytorch
build yolo-triton-server:standin docker/Dockerfile.server . --build-arg BASE_IMAGE=yolo-ngc-standin:tritonserver
