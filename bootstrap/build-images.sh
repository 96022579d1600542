#!/usr/bin/env bash
# mmdebstrap's hooks get the root filesystem as $1: single quotes on purpose.
# shellcheck disable=SC2016
# Build the platform's images from their Dockerfiles (make images; install.sh --target kind calls it).
#
#   bootstrap/build-images.sh [--env ENV | --tag TAG] [--registry REGISTRY] [--engine auto|docker|buildah]
#                             [--bases auto|public|local] [--archives DIR] [--reuse-existing] [COMPONENT ...]
#
# --env ENV      tag each image exactly as environments/ENV pins it (polyp-gitops own-images); default:
#                REGISTRY/COMPONENT:TAG, TAG the commit (what the images workflow publishes)
# --engine       docker where an engine answers, else buildah (no daemon; Debian's buildah works as root)
# --bases        public: the Dockerfiles' defaults (python:3.11-slim, rayproject/ray, nginx-unprivileged, node);
#                local: the same roles built here from Debian packages (mmdebstrap) and PyPI, for machines
#                that reach no image registry; auto: public if Docker Hub answers, else local
# --archives DIR also write each image as DIR/COMPONENT.tar (OCI archive: kind load image-archive, ctr import)
# --reuse-existing  skip a component whose reference the engine already holds (install.sh --target kind)
#
# Layers are cached by the engine, and uv's and pip's downloads by cache mounts: a rebuild downloads nothing
# it has seen (torch included).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

declare -A DOCKERFILE=(
  [control-service]=services/control/Dockerfile
  [frontend]=services/frontend/Dockerfile
  [training]=training/Dockerfile
)
# Local bases: Debian bookworm's Python 3.11 (the lock's minor version) and the lock's Ray version.
LOCAL_BASES_REVISION=4
RAY_VERSION=2.52.0
LOCAL_PYTHON=localhost/polyp-base/python:3.11-bookworm-r$LOCAL_BASES_REVISION
LOCAL_RAY=localhost/polyp-base/ray:$RAY_VERSION-py311-bookworm-r$LOCAL_BASES_REVISION
LOCAL_NGINX=localhost/polyp-base/nginx-unprivileged:bookworm-r$LOCAL_BASES_REVISION
LOCAL_NODE=localhost/polyp-base/node:bookworm-r$LOCAL_BASES_REVISION

env_name="" tag="" registry="ghcr.io/polyp-mlops" engine=auto bases=auto archives="" reuse=false components=()
while [ $# -gt 0 ]; do
  case "$1" in
    --env) env_name="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --registry) registry="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --bases) bases="$2"; shift 2 ;;
    --archives) archives="$2"; shift 2 ;;
    --reuse-existing) reuse=true; shift ;;
    -h|--help) sed -n '4,20p' "$0"; exit 0 ;;
    -*) echo "build-images.sh: unknown option $1" >&2; exit 2 ;;
    *) components+=("$1"); shift ;;
  esac
done
[ ${#components[@]} -gt 0 ] || components=(control-service frontend training)
for component in "${components[@]}"; do
  [ -n "${DOCKERFILE[$component]:-}" ] || { echo "build-images.sh: no image named $component (one of: ${!DOCKERFILE[*]})" >&2; exit 2; }
done

if [ "$engine" = auto ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v buildah >/dev/null; then engine=buildah
  else echo "build-images.sh: neither a Docker engine nor buildah here (apt-get install buildah)" >&2; exit 2
  fi
fi
if [ "$bases" = auto ]; then
  # Docker Hub's registry answers 401 to an anonymous probe when it is reachable at all.
  code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' https://registry-1.docker.io/v2/ || true)
  if [ "$code" = 401 ]; then bases=public; else bases=local; fi
fi
echo "build-images.sh: engine $engine, $bases base images" >&2

declare -A REF=()
if [ -n "$env_name" ]; then
  # make's uv (.tools/bin) or one on PATH; make sync installed the workspace.
  pins="$(PATH="$ROOT/.tools/bin:$PATH" uv run --frozen polyp-gitops own-images --env "$env_name")"
  while read -r component ref; do REF[$component]="$ref"; done <<< "$pins"
else
  tag="${tag:-$(git rev-parse HEAD)}"
  for component in "${components[@]}"; do REF[$component]="$registry/$component:$tag"; done
fi

image_exists() {
  if [ "$engine" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else buildah inspect --type image "$1" >/dev/null 2>&1
  fi
}

host_arch() { case "$(uname -m)" in x86_64) echo amd64 ;; aarch64|arm64) echo arm64 ;; *) uname -m ;; esac; }

build() {  # build REF DOCKERFILE CONTEXT [BUILD ARGS...]
  local ref="$1" file="$2" context="$3"; shift 3
  local args=()
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  if [ "$engine" = docker ]; then
    DOCKER_BUILDKIT=1 docker build -f "$file" -t "$ref" "${args[@]}" "$context"
  else
    # buildah 1.28 does not define the automatic platform arguments in the global scope yet.
    buildah bud --layers --format oci -f "$file" -t "$ref" --build-arg "TARGETARCH=$(host_arch)" "${args[@]}" "$context"
  fi
}

# A root filesystem from Debian packages, with this machine's own CA certificates (a TLS-inspecting proxy's
# included: builds inside the image then trust what the machine trusts), as a FROM-scratch image.
debian_base() {  # debian_base REF PACKAGES CUSTOMIZE-SCRIPT CONTAINERFILE-TAIL
  local ref="$1" packages="$2" customize="$3" tail="$4"
  image_exists "$ref" && return 0
  command -v mmdebstrap >/dev/null || { echo "build-images.sh: local bases need mmdebstrap (apt-get install mmdebstrap)" >&2; exit 2; }
  local dir; dir="$(mktemp -d)"
  mkdir -p "$dir/ca"
  cp /usr/local/share/ca-certificates/*.crt "$dir/ca/" 2>/dev/null || true
  echo "$customize" > "$dir/customize.sh"
  echo "build-images.sh: building base $ref from Debian packages" >&2
  mmdebstrap --quiet --variant=minbase --include="ca-certificates,$packages" \
    --customize-hook="cp $dir/ca/*.crt \"\$1/usr/local/share/ca-certificates/\" 2>/dev/null || true" \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook="sh $dir/customize.sh \"\$1\"" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$dir/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n%s\n' "$tail" > "$dir/Containerfile"
  build "$ref" "$dir/Containerfile" "$dir"
  rm -rf "$dir"
}

local_bases() {  # local_bases COMPONENT...: the bases those components' Dockerfiles use
  local wanted=" $* "
  # python:3.11-slim's role: python3.11 with pip and venv, pip allowed to install (no PEP 668 marker).
  debian_base "$LOCAL_PYTHON" "python3.11,python3.11-venv,python3-pip,passwd" \
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED; ln -sf /usr/bin/python3 "$1"/usr/local/bin/python' \
    'CMD ["python3"]'
  # node's role in the frontend: `node --check` of the page's scripts.
  [[ "$wanted" == *" frontend "* ]] && debian_base "$LOCAL_NODE" "nodejs" 'true' 'CMD ["node"]'
  # nginx-unprivileged's role: nginx as uid 101 on 8080, pid and temp files in /tmp, templates rendered at start.
  [[ "$wanted" == *" frontend "* ]] && debian_base "$LOCAL_NGINX" "nginx-light,gettext-base" "$(cat "$ROOT/bootstrap/images/nginx-unprivileged.sh")" \
    'ENTRYPOINT ["/docker-entrypoint.sh"]
STOPSIGNAL SIGQUIT
EXPOSE 8080
USER 101:101
CMD ["nginx", "-g", "daemon off;"]'
  # rayproject/ray's role: user ray (uid 1000, group users) owning the Python that has the lock's Ray, at the
  # official image's path (a venv here, conda there), so that pip installs over it as that user.
  if [[ "$wanted" == *" training "* ]] && ! image_exists "$LOCAL_RAY"; then
    local dir; dir="$(mktemp -d)"
    cat > "$dir/Containerfile" <<EOF
FROM $LOCAL_PYTHON
# wget: KubeRay's probes of the head and workers call it, as the official image has it.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends wget && rm -rf /var/lib/apt/lists/* \\
 && useradd --uid 1000 --gid 100 --create-home --shell /bin/bash ray \\
 && python3 -m venv /home/ray/anaconda3 && chown -R 1000:100 /home/ray/anaconda3
ENV PATH=/home/ray/anaconda3/bin:\$PATH
USER 1000:100
WORKDIR /home/ray
RUN --mount=type=cache,target=/home/ray/.cache/pip,uid=1000,gid=100 pip install "ray[default]==$RAY_VERSION"
EOF
    build "$LOCAL_RAY" "$dir/Containerfile" "$dir"
    rm -rf "$dir"
  fi
}

base_args=()
if [ "$bases" = local ]; then
  local_bases "${components[@]}"
  # The local Ray base is built for this machine's architecture, whichever TARGETARCH picks.
  base_args=("PYTHON_IMAGE=$LOCAL_PYTHON" "RAY_IMAGE_AMD64=$LOCAL_RAY" "RAY_IMAGE_ARM64=$LOCAL_RAY"
    "NGINX_IMAGE=$LOCAL_NGINX" "NODE_IMAGE=$LOCAL_NODE")
fi

for component in "${components[@]}"; do
  ref="${REF[$component]}"
  began=$(date +%s)
  if $reuse && image_exists "$ref"; then
    echo "build-images.sh: $ref exists: reused" >&2
  else
    build "$ref" "${DOCKERFILE[$component]}" . "${base_args[@]}"
    echo "build-images.sh: $ref built in $(( $(date +%s) - began )) s" >&2
  fi
  if [ -n "$archives" ]; then
    mkdir -p "$archives"
    rm -f "$archives/$component.tar"
    if [ "$engine" = docker ]; then docker save -o "$archives/$component.tar" "$ref"
    else buildah push --quiet "$ref" "oci-archive:$archives/$component.tar:$ref"
    fi
    echo "$archives/$component.tar"
  fi
done
