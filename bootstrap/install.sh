#!/usr/bin/env bash
# Install Argo CD onto a kind cluster, GKE or the local cluster (make cluster), generate the platform's secrets in the cluster,
# and hand the environment over to its root Application. Safe to run again: it creates only
# what is missing and re-applies the rest unchanged.
#
#   bootstrap/install.sh --target kind --env dev
#   bootstrap/install.sh --target local --env dev       # after `make cluster`: no Docker needed
#   bootstrap/install.sh --target gke  --env prod --repo https://github.com/you/fork.git --revision main
#   bootstrap/install.sh --target kind --env dev --dry-run     # print what would be applied; no cluster
set -euo pipefail

ARGOCD_CHART_REPO=https://argoproj.github.io/argo-helm
ARGOCD_CHART_VERSION=10.1.1        # Argo CD v3.4.4
ARGOCD_NAMESPACE=argocd
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'USAGE'
Options:
  --target kind|gke|local
                        kind: create the kind cluster if missing, build the platform's images (make images)
                        and load them into it; gke: use the current kube context (images from the registry);
                        local: the cluster of `make cluster` (kwok nodes), with the real Argo CD
                        running as local processes; repo defaults to this checkout (file://)
  --env ENV             an environment of environments/promotion.yaml
  --repo URL            git repository Argo CD tracks (default: this checkout's origin, as https)
  --revision REV        branch, tag or commit Argo CD tracks (default: the current branch)
  --cluster-name NAME   kind cluster name (default: polyp)
  --chart-mirror URL    air-gapped: pull Argo CD and every upstream chart from this Helm repository
                        (https://...) or OCI prefix (registry.example.com/charts); see docs/operations.md
  --dry-run             print every manifest it would apply and the commands it would run
USAGE
}

die() { echo "install.sh: $*" >&2; exit 2; }

target="" env="" repo="" revision="" cluster_name=polyp dry_run=false chart_mirror=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) target=${2:-}; shift 2 ;;
    --env) env=${2:-}; shift 2 ;;
    --repo) repo=${2:-}; shift 2 ;;
    --revision) revision=${2:-}; shift 2 ;;
    --cluster-name) cluster_name=${2:-}; shift 2 ;;
    --chart-mirror) chart_mirror=${2:-}; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $target == kind || $target == gke || $target == local ]] || die "--target must be kind, gke or local"
# The environments, in promotion order, from their one definition (a flow list: environments: [dev, ...]).
read -ra environments <<<"$(sed -n 's/^environments: *\[\(.*\)\]/\1/p' "$ROOT/environments/promotion.yaml" | tr ',' ' ')"
[[ " ${environments[*]} " == *" $env "* && -n $env ]] || die "--env must be one of ${environments[*]} (environments/promotion.yaml)"

# The local cluster: its kubeconfig and chart mirror, and a command for its Argo CD processes.
if [[ $target == local ]] && ! $dry_run; then
  if command -v polyp-cluster >/dev/null; then cluster=(polyp-cluster)
  else cluster=(uv run --frozen --project "$ROOT" polyp-cluster); fi
  cluster_env=$("${cluster[@]}" env) || die "no local cluster: run \`make cluster\` first"
  eval "$cluster_env"   # KUBECONFIG, POLYP_CHART_MIRROR
  [[ -n $chart_mirror ]] || chart_mirror=$POLYP_CHART_MIRROR
fi

# A fork works without editing files: the repository and revision come from the checkout.
if [[ -z $repo && $target == local ]]; then
  repo="file://$ROOT"   # Argo CD reads this checkout's commits directly
elif [[ -z $repo ]]; then
  repo=$(git -C "$ROOT" config --get remote.origin.url 2>/dev/null) \
    || die "no git remote 'origin': pass --repo URL"
  repo=$(sed -E 's#^git@([^:]+):#https://\1/#' <<<"$repo")
fi
if [[ -z $revision ]]; then
  revision=$(git -C "$ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null) || revision=main
  if [[ $revision == HEAD ]]; then  # detached: track the commit itself
    revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null) || revision=main
  fi
fi

command -v helm >/dev/null || die "helm not found (make tools installs a pinned one)"

# ---- secrets: generated into the cluster, never stored in git -------------------------------
# namespace name key=value|key=@random ...  (one Secret per line). A Secret whose name exists
# in another namespace already gets the same values: each MinIO user's Secret sits in `minio` (the chart's user Job
# reads it there) and, for the component that uses it, in `polyp`. Each user's policy: apps/values.yaml, minio.
SECRETS=(
  "minio minio-root rootUser=minio-admin rootPassword=@random"
  "minio s3-training AWS_ACCESS_KEY_ID=training AWS_SECRET_ACCESS_KEY=@random"
  "polyp s3-training AWS_ACCESS_KEY_ID=training AWS_SECRET_ACCESS_KEY=@random"
  "minio s3-serving AWS_ACCESS_KEY_ID=serving AWS_SECRET_ACCESS_KEY=@random"
  "polyp s3-serving AWS_ACCESS_KEY_ID=serving AWS_SECRET_ACCESS_KEY=@random"
  "minio s3-mlflow AWS_ACCESS_KEY_ID=mlflow AWS_SECRET_ACCESS_KEY=@random"
  "polyp s3-mlflow AWS_ACCESS_KEY_ID=mlflow AWS_SECRET_ACCESS_KEY=@random"
  "minio s3-datasets AWS_ACCESS_KEY_ID=dataset-publisher AWS_SECRET_ACCESS_KEY=@random"
  "polyp redis-users default=@random"
  "polyp platform-db-scheduler username=scheduler password=@random"
  "polyp mlflow-flask MLFLOW_FLASK_SERVER_SECRET_KEY=@random"
  "polyp mlflow-admin username=admin password=@random"
  "polyp mlflow-training username=training password=@random"
  "polyp mlflow-control-service username=control-service password=@random"
  "polyp control-api-token token=@random"
  "polyp control-api-read-token token=@random"
  "monitoring grafana-admin admin-user=admin admin-password=@random"
)
# KServe's storage initializer reads the S3 endpoint from these annotations (on serving's Secret).
S3_ANNOTATIONS=(
  "serving.kserve.io/s3-endpoint=minio.minio.svc.cluster.local:9000"
  "serving.kserve.io/s3-usehttps=0"
  "serving.kserve.io/s3-region=us-east-1"
  "serving.kserve.io/s3-useanoncredential=false"
)
NAMESPACES=(argocd minio polyp monitoring)

random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

secret_value() {  # name key spec -> the literal, the value already in the cluster, or a new random one
  local name=$1 key=$2 spec=$3 ns existing
  [[ $spec != @random ]] && { echo "$spec"; return; }
  for ns in "${NAMESPACES[@]}"; do
    existing=$(kubectl -n "$ns" get secret "$name" -o "jsonpath={.data.$key}" 2>/dev/null | base64 -d 2>/dev/null || true)
    [[ -n $existing ]] && { echo "$existing"; return; }
  done
  random_secret
}

secret_type() {  # key=spec ... -> a username and password pair is basic-auth (CloudNativePG's role Secrets), else Opaque
  if [[ " $* " == *" username="* && " $* " == *" password="* ]]; then echo kubernetes.io/basic-auth; else echo Opaque; fi
}

print_secret_manifest() {  # for --dry-run: the shape of what would be created, no values
  local ns=$1 name=$2; shift 2
  printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n' "$name" "$ns"
  if [[ $name == s3-serving ]]; then
    printf '  annotations:\n'
    for a in "${S3_ANNOTATIONS[@]}"; do printf '    %s: "%s"\n' "${a%%=*}" "${a#*=}"; done
  fi
  printf 'type: %s\nstringData:\n' "$(secret_type "$@")"
  for kv in "$@"; do
    value=${kv#*=}
    [[ $value == @random ]] && value="<generated at install>"
    printf '  %s: "%s"\n' "${kv%%=*}" "$value"
  done
}

ensure_secret() {
  local ns=$1 name=$2; shift 2
  if kubectl -n "$ns" get secret "$name" >/dev/null 2>&1; then
    echo "secret $ns/$name exists: kept"
    return
  fi
  local args=() kv
  for kv in "$@"; do args+=("--from-literal=${kv%%=*}=$(secret_value "$name" "${kv%%=*}" "${kv#*=}")"); done
  kubectl -n "$ns" create secret generic "$name" --type="$(secret_type "$@")" "${args[@]}" >/dev/null
  [[ $name == s3-serving ]] && kubectl -n "$ns" annotate --overwrite secret "$name" "${S3_ANNOTATIONS[@]}" >/dev/null
  echo "secret $ns/$name generated"
}

root_manifests() {
  helm template "polyp-$env" "$HERE/root" --namespace "$ARGOCD_NAMESPACE" --values "$ROOT/environments/promotion.yaml" \
    --set-string "environment=$env,repoURL=$repo,targetRevision=$revision,argocdNamespace=$ARGOCD_NAMESPACE" \
    --set-string "chartMirror=$chart_mirror"
}

if [[ -z $chart_mirror ]]; then
  argocd_chart=(argo-cd --repo "$ARGOCD_CHART_REPO")
elif [[ $chart_mirror == http* ]]; then
  argocd_chart=(argo-cd --repo "$chart_mirror")
else
  argocd_chart=("oci://$chart_mirror/argo-cd")
fi
argocd_install=(helm upgrade --install argocd "${argocd_chart[@]}" --version "$ARGOCD_CHART_VERSION"
  --namespace "$ARGOCD_NAMESPACE" --create-namespace --values "$HERE/argocd-values.yaml"
  --set-file "configs.cm.resource\.customizations\.health\.argoproj\.io_Application=$HERE/application-health.lua"
  --wait --timeout 10m)
# The local cluster runs Argo CD's controller from source at its own version: its CRDs come with it.
if [[ $target == local ]]; then argocd_install+=(--set crds.install=false); fi

if $dry_run; then
  echo "# bootstrap/install.sh --dry-run: target=$target env=$env repo=$repo revision=$revision"
  if [[ $target == local ]]; then
    echo "# would use the cluster of make cluster (polyp-cluster env) and start Argo CD: polyp-cluster argocd"
  elif [[ $target == kind ]]; then
    echo "# would run: kind create cluster --name $cluster_name --config bootstrap/kind-config.yaml (if missing)"
    echo "# would run: bootstrap/build-images.sh --env $env --reuse-existing --archives DIR, then for each image:"
    echo "#            kind load image-archive DIR/IMAGE.tar --name $cluster_name"
  else
    echo "# would use kube context: $(kubectl config current-context 2>/dev/null || echo '<current context>')"
  fi
  echo "# would run: ${argocd_install[*]}"
  for ns in "${NAMESPACES[@]}"; do
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns"
  done
  for line in "${SECRETS[@]}"; do
    # shellcheck disable=SC2086
    print_secret_manifest $line
  done
  root_manifests
  exit 0
fi

command -v kubectl >/dev/null || die "kubectl not found"
if [[ $target == kind ]]; then
  command -v kind >/dev/null || die "kind not found (https://kind.sigs.k8s.io)"
  if kind get clusters 2>/dev/null | grep -qx "$cluster_name"; then
    echo "kind cluster $cluster_name exists: kept"
  else
    kind create cluster --name "$cluster_name" --config "$HERE/kind-config.yaml"
  fi
  kubectl config use-context "kind-$cluster_name" >/dev/null
  # No registry holds our images: build them from this checkout at the tags $env pins (reusing an image already
  # built at that tag) and load them into the kind nodes.
  images_dir=$(mktemp -d)
  "$HERE/build-images.sh" --env "$env" --reuse-existing --archives "$images_dir"
  for archive in "$images_dir"/*.tar; do kind load image-archive "$archive" --name "$cluster_name"; done
  rm -rf "$images_dir"
elif [[ $target == local ]]; then
  kubectl cluster-info >/dev/null || die "the local cluster does not answer: run \`make cluster\`"
  echo "using the local cluster ($KUBECONFIG)"
else
  kubectl cluster-info >/dev/null || die "no reachable cluster in kube context $(kubectl config current-context 2>/dev/null)"
  echo "using kube context $(kubectl config current-context)"
fi

for ns in "${NAMESPACES[@]}"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
"${argocd_install[@]}"
for line in "${SECRETS[@]}"; do
  # shellcheck disable=SC2086
  ensure_secret $line
done
# kwok only pretends Argo CD's pods run: the real controller and repo-server run as processes.
if [[ $target == local ]]; then "${cluster[@]}" argocd; fi
root_manifests | kubectl apply -f -
kubectl -n "$ARGOCD_NAMESPACE" rollout status deployment/argocd-server --timeout=5m
kubectl -n "$ARGOCD_NAMESPACE" rollout status deployment/argocd-repo-server --timeout=5m

cat <<INFO

Argo CD now syncs polyp-$env from $repo@$revision.

Argo CD     kubectl -n argocd port-forward svc/argocd-server 8080:80           -> http://localhost:8080
            user admin, password:
            kubectl -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d
Swagger     kubectl -n polyp port-forward svc/control-service 8000:8000         -> http://localhost:8000/docs
Alert page  kubectl -n polyp port-forward svc/frontend 8081:8080                -> http://localhost:8081
MLflow      kubectl -n polyp port-forward svc/mlflow 5000:5000                  -> http://localhost:5000
            (user/password: secret polyp/mlflow-admin)
MinIO       kubectl -n minio port-forward svc/minio-console 9001:9001           -> http://localhost:9001
            (user/password: secret minio/minio-root)
Datasets    polyp-train dataset push with the keys of secret minio/s3-datasets (write access to bucket datasets only)
Ray         kubectl -n polyp port-forward svc/training-head-svc 8265:8265       -> http://localhost:8265
Grafana     kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80 -> http://localhost:3000
            (user/password: secret monitoring/grafana-admin)
Control API token (for POST/DELETE in Swagger):
            kubectl -n polyp get secret control-api-token -o jsonpath='{.data.token}' | base64 -d
INFO
