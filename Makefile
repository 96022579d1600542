# The README's two commands are `make up` and `make test`; everything else they need is here.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Pinned tool versions.
UV_VERSION          := 0.13.9
HELM_VERSION        := v3.19.0
KUBECONFORM_VERSION := v0.7.0
ACTIONLINT_VERSION  := v1.7.7
HELM_DOCS_VERSION   := v1.14.2

TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
export GOBIN := $(TOOLS_BIN)
UV := uv

.PHONY: help
help:
	@echo "make up        run the platform's main loop locally on embedded defaults"
	@echo "make test      install what the tests need and run them all (what CI runs)"
	@echo "make test-fast the same minus the slow tiers (Ray, Triton, browser, training): a few minutes"
	@echo "make fixtures  upstream charts, CRD schemas, Kvasir-SEG frames the tests read: ../shared, the cache or download"
	@echo "make validate  render dev, staging and prod as Argo CD would and validate every object"
	@echo "make cluster   a local Kubernetes control plane with kwok nodes (no Docker); make cluster-down stops it"
	@echo "make tools     install pinned helm, kubeconform, actionlint, helm-docs (go install); promtool, redis-server, chromium, bsdtar, postgresql, containerd, runc, buildah, mmdebstrap (apt)"
	@echo "make chart-docs regenerate charts/*/README.md with helm-docs from the charts' values.yaml comments"
	@echo "make lint      ruff format check, ruff, mypy over every src/ tree, shellcheck, actionlint, chart READMEs current"
	@echo "make images    build the platform's images with docker or buildah (ENV=dev: as dev pins them; IMAGES=frontend: only those)"

# ---- tools ----------------------------------------------------------------------------------
$(TOOLS_BIN)/helm:
	go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(TOOLS_BIN)/kubeconform:
	go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

$(TOOLS_BIN)/actionlint:
	go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

$(TOOLS_BIN)/helm-docs:
	go install github.com/norwoodj/helm-docs/cmd/helm-docs@$(HELM_DOCS_VERSION)

# Debian packages the tests run for real: promtool (prometheus), redis-server, chromium (browser test),
# bsdtar (libarchive-tools: unpacks CVC-ClinicDB's RAR release for `make fixtures`, and its tests),
# PostgreSQL (the control service's database in a cluster; its binaries live off PATH, pg_ctlcluster is on it),
# the local cluster's real node (containerd, runc, the CNI plugins, iptables and ipset for kube-proxy and kube-router, cc for the pause
# binary) and the images (buildah, mmdebstrap for base images where no registry answers, curl to find out).
# `env VAR=...`: with SUDO empty (root) a bare `VAR=... apt-get` after $$SUDO would be taken as the command name.
# DPkg::Lock::Timeout: on a new machine another process (unattended upgrades) may hold the lock; wait for it.
CNI_BIN_DIR ?= /usr/lib/cni
.PHONY: system-packages
system-packages:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v bsdtar >/dev/null || missing="$$missing libarchive-tools"; \
	command -v pg_ctlcluster >/dev/null || missing="$$missing postgresql"; \
	command -v containerd >/dev/null || missing="$$missing containerd"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	command -v buildah >/dev/null || missing="$$missing buildah"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	[ -x $(CNI_BIN_DIR)/bridge ] || missing="$$missing containernetworking-plugins"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v ipset >/dev/null || missing="$$missing ipset"; \
	command -v cc >/dev/null || missing="$$missing gcc libc6-dev"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=600; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $$missing; \
	fi

.PHONY: go-tools
go-tools: $(TOOLS_BIN)/helm $(TOOLS_BIN)/kubeconform $(TOOLS_BIN)/actionlint $(TOOLS_BIN)/helm-docs

.PHONY: tools
tools: go-tools system-packages
	@helm version --short; kubeconform -v; actionlint -version | head -1; promtool --version | head -1

# Chart READMEs: helm-docs renders charts/*/README.md from each chart's README.md.gotmpl and the `# --`
# comments in its values.yaml. tests/manifests/test_schemas.py runs helm-docs with these flags on a copy
# of charts/ and fails when a committed README differs or a value has no description.
HELM_DOCS_FLAGS := --sort-values-order file --log-level warning
.PHONY: chart-docs
chart-docs: $(TOOLS_BIN)/helm-docs
	helm-docs --chart-search-root $(CURDIR)/charts $(HELM_DOCS_FLAGS)

# ---- local cluster: a real control plane, kwok nodes and the real Argo CD, without Docker ------
# Built from pinned Go modules in dev/local-cluster/go/ (one per upstream: Kubernetes, etcd,
# kwok, Argo CD). Cold ~10 min on 2 cores (modules downloaded); nothing to do once built (docs/local-cluster.md).
K8S_VERSION := v1.34.2
# Go toolchains, pinned (the go command fetches one from the module proxy if the local Go differs):
# Argo CD v3.6 needs Go >= 1.27.
GO_TOOLCHAIN        := go1.26.8
ARGOCD_GO_TOOLCHAIN := go1.27.4
CLUSTER_GO  := $(CURDIR)/dev/local-cluster/go
SHARE       := $(CURDIR)/.tools/share
K8S_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34
K8S_BINARIES := $(addprefix $(TOOLS_BIN)/,kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
CLUSTER_BINARIES := $(K8S_BINARIES) $(TOOLS_BIN)/etcd $(TOOLS_BIN)/kwok $(TOOLS_BIN)/argocd $(TOOLS_BIN)/coredns \
  $(TOOLS_BIN)/kube-router $(TOOLS_BIN)/cnpg-manager $(TOOLS_BIN)/kuberay-operator $(TOOLS_BIN)/kuberay-featuregates $(TOOLS_BIN)/minio $(TOOLS_BIN)/mc

# $(call go_build,what,cold minutes,module folder,toolchain,go build arguments): timed, with progress.
define go_build
	@echo "building $(1) (cold ~$(2) min)"
	@start=$$(date +%s); cd $(CLUSTER_GO)/$(3) && GOTOOLCHAIN=$(4) go build -buildvcs=false $(5); \
	  echo "  $(1) built in $$(( $$(date +%s) - start )) s"
endef

$(K8S_BINARIES) &: $(CLUSTER_GO)/k8s/go.mod $(CLUSTER_GO)/k8s/go.sum $(wildcard $(CLUSTER_GO)/k8s/cmd/*/*.go)
	$(call go_build,Kubernetes $(K8S_VERSION) apiserver/controller-manager/scheduler/kubectl/kubelet/kube-proxy,6,k8s,$(GO_TOOLCHAIN),-o $(TOOLS_BIN)/ -ldflags "$(K8S_LDFLAGS)" ./cmd/...)

$(TOOLS_BIN)/etcd: $(CLUSTER_GO)/etcd/go.mod $(CLUSTER_GO)/etcd/go.sum
	$(call go_build,etcd,0.5,etcd,$(GO_TOOLCHAIN),-o $@ -ldflags "-s -w" .)

# The real node's cluster DNS (its image is this binary FROM scratch: polyp_dev.cluster.images), static.
$(TOOLS_BIN)/coredns: $(CLUSTER_GO)/coredns/go.mod $(CLUSTER_GO)/coredns/go.sum $(CLUSTER_GO)/coredns/main.go
	$(call go_build,CoreDNS,3,coredns,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $@ -ldflags "-s -w" .)

# The real node's NetworkPolicy enforcer, static.
$(TOOLS_BIN)/kube-router: $(CLUSTER_GO)/kube-router/go.mod $(CLUSTER_GO)/kube-router/go.sum $(CLUSTER_GO)/kube-router/main.go
	$(call go_build,kube-router,3,kube-router,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $@ -ldflags "-s -w" .)

# CloudNativePG's operator, static: the real node's PostgreSQL operator (its image is this binary FROM scratch).
$(TOOLS_BIN)/cnpg-manager: $(CLUSTER_GO)/cnpg/go.mod $(CLUSTER_GO)/cnpg/go.sum $(CLUSTER_GO)/cnpg/tools.go
	$(call go_build,CloudNativePG operator,1.5,cnpg,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $@ -ldflags "-s -w" github.com/cloudnative-pg/cloudnative-pg/cmd/manager)

# KubeRay's operator, static: the real node's Ray operator, and the /manager that runs it with the 1.7.0 chart's
# arguments (go/kuberay/featuregates); its image is these two FROM scratch.
$(TOOLS_BIN)/kuberay-operator $(TOOLS_BIN)/kuberay-featuregates &: $(CLUSTER_GO)/kuberay/go.mod $(CLUSTER_GO)/kuberay/go.sum \
  $(CLUSTER_GO)/kuberay/tools.go $(CLUSTER_GO)/kuberay/featuregates/main.go
	$(call go_build,KubeRay operator,1.2,kuberay,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $(TOOLS_BIN)/kuberay-operator -ldflags "-s -w" github.com/ray-project/kuberay/ray-operator)
	$(call go_build,KubeRay feature gates,0.2,kuberay,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $(TOOLS_BIN)/kuberay-featuregates -ldflags "-s -w" ./featuregates)

# MinIO's server and client, static, for the minio chart's images (polyp_dev.cluster.images lays them on Debian, with
# the server's own docker-entrypoint.sh from its module).
# Each is stamped with its release as upstream's buildscripts/gen-ldflags.go stamps it, read from the pinned
# pseudo-version (v0.0.0-<yyyymmddhhmmss>-<commit>): `minio --version` names the release, not DEVELOPMENT.
define minio_ldflags
-s -w $$(v=$$(cd $(CLUSTER_GO)/$(1) && GOTOOLCHAIN=$(GO_TOOLCHAIN) go list -m -f '{{.Version}}' github.com/minio/$(1)); \
  stamp=$$(echo $$v | cut -d- -f2); commit=$$(echo $$v | cut -d- -f3); \
  when=$$(echo $$stamp | sed -E 's/(....)(..)(..)(..)(..)(..)/\1-\2-\3T\4:\5:\6Z/'); \
  for x in Version=$$when ReleaseTag=RELEASE.$$(echo $$when | tr : -) CopyrightYear=$${stamp:0:4} CommitID=$$commit \
    ShortCommitID=$$commit; do printf -- '-X github.com/minio/$(1)/cmd.%s ' $$x; done)
endef

$(TOOLS_BIN)/minio: $(CLUSTER_GO)/minio/go.mod $(CLUSTER_GO)/minio/go.sum $(CLUSTER_GO)/minio/tools.go
	$(call go_build,MinIO server,2,minio,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $@ -ldflags "$(call minio_ldflags,minio)" github.com/minio/minio)
	@module=$$(cd $(CLUSTER_GO)/minio && GOTOOLCHAIN=$(GO_TOOLCHAIN) go list -m -f '{{.Dir}}' github.com/minio/minio); \
	  install -m 0755 $$module/dockerscripts/docker-entrypoint.sh $(TOOLS_BIN)/minio-docker-entrypoint.sh

$(TOOLS_BIN)/mc: $(CLUSTER_GO)/mc/go.mod $(CLUSTER_GO)/mc/go.sum $(CLUSTER_GO)/mc/tools.go
	$(call go_build,MinIO client,0.5,mc,$(GO_TOOLCHAIN) CGO_ENABLED=0,-o $@ -ldflags "$(call minio_ldflags,mc)" github.com/minio/mc)

# kwok's node, pod and volume stages ship in its module: copied beside the binary.
$(TOOLS_BIN)/kwok: $(CLUSTER_GO)/kwok/go.mod $(CLUSTER_GO)/kwok/go.sum
	$(call go_build,kwok,1,kwok,$(GO_TOOLCHAIN),-o $@ -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok)
	@stages=$$(cd $(CLUSTER_GO)/kwok && GOTOOLCHAIN=$(GO_TOOLCHAIN) go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage; \
	  rm -rf $(SHARE)/kwok-stages && mkdir -p $(SHARE)/kwok-stages && \
	  cp $$stages/node/fast/node-initialize.yaml $$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	     $$stages/pod/fast/pod-*.yaml $$stages/volume/fast/pv*.yaml $(SHARE)/kwok-stages/ && \
	  cp $$stages/volume/fast/storage-class.yaml $(SHARE)/kwok-storage-class.yaml && chmod -R u+w $(SHARE)/kwok-*

# Its CRDs and the git wrapper its repo-server execs come from the same module.
$(TOOLS_BIN)/argocd: $(CLUSTER_GO)/argocd/go.mod $(CLUSTER_GO)/argocd/go.sum $(CLUSTER_GO)/argocd/main.go
	$(call go_build,Argo CD application-controller + repo-server,4.5,argocd,$(ARGOCD_GO_TOOLCHAIN),-o $@ -ldflags "-s -w" .)
	@module=$$(cd $(CLUSTER_GO)/argocd && GOTOOLCHAIN=$(ARGOCD_GO_TOOLCHAIN) go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3); \
	  rm -rf $(SHARE)/argocd && mkdir -p $(SHARE)/argocd/bin $(SHARE)/argocd/crds && \
	  cp $$module/manifests/crds/*-crd.yaml $(SHARE)/argocd/crds/ && \
	  cp $$module/hack/git-verify-wrapper.sh $(SHARE)/argocd/bin/ && chmod -R u+w,a+rX $(SHARE)/argocd && \
	  chmod +x $(SHARE)/argocd/bin/git-verify-wrapper.sh

.PHONY: cluster-binaries
cluster-binaries: $(CLUSTER_BINARIES)

.PHONY: cluster
cluster: cluster-binaries go-tools sync fixtures
	$(UV) run --frozen polyp-cluster up

.PHONY: cluster-down
cluster-down: sync
	$(UV) run --frozen polyp-cluster down

# ---- Python workspace -----------------------------------------------------------------------
# uv goes into .tools/ (pip --target): no root needed, and no clash with a system Python that refuses pip (PEP 668).
.PHONY: uv
uv:
	@command -v $(UV) >/dev/null || { \
	  python3 -m pip install --quiet --disable-pip-version-check --target "$(CURDIR)/.tools/uv" "uv==$(UV_VERSION)" && \
	  mkdir -p "$(TOOLS_BIN)" && ln -sf "$(CURDIR)/.tools/uv/bin/uv" "$(TOOLS_BIN)/uv"; }

.PHONY: sync
sync: uv
	$(UV) sync --frozen --all-packages

# ---- the two commands -----------------------------------------------------------------------
# What the tests read but the repository does not hold (dev/fixtures/src/polyp_fixtures/manifest.toml):
# ../shared beside the checkout or POLYP_FIXTURES when present, else downloaded once into
# .cache/fixtures/ from the pinned sources (helm pulls the charts) and checked against the sha256s.
.PHONY: fixtures
fixtures: go-tools sync
	$(UV) run --frozen polyp-fixtures fetch

.PHONY: validate
validate: tools sync fixtures
	eval "$$($(UV) run --frozen polyp-fixtures env)" && $(UV) run --frozen polyp-gitops validate

.PHONY: test
test: tools sync fixtures cluster-binaries
	$(UV) run --frozen pytest

# The developer loop: everything but the slow tiers (Ray, Triton, browser, training, local cluster), in a few minutes.
FAST_TIERS := not (ray or triton or browser or training or cluster)
.PHONY: test-fast
test-fast: tools sync fixtures
	$(UV) run --frozen pytest -m "$(FAST_TIERS)"

# What CI's lint step and the pre-commit hook (.pre-commit-config.yaml) run.
.PHONY: lint
lint: tools sync
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .
	$(UV) run --frozen mypy   # [tool.mypy] in pyproject.toml: every src/ tree
	$(UV) run --frozen shellcheck bootstrap/install.sh bootstrap/build-images.sh bootstrap/images/nginx-unprivileged.sh .ci/run
	$(UV) run --frozen actionlint   # checks run: scripts with the venv's shellcheck
	$(UV) run --frozen pytest -q -p no:cacheprovider tests/manifests/test_schemas.py -k helm_docs   # chart READMEs current

# The platform's images from their Dockerfiles, with docker or (no daemon) buildah; where no image registry
# answers, the base images are built here from Debian packages and PyPI. ENV=dev tags them as dev pins them.
# ARCHIVES=DIR also writes each as an OCI archive (kind load image-archive, polyp-cluster load).
IMAGE_ARGS := $(if $(ENV),--env $(ENV),) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG),) $(if $(ARCHIVES),--archives $(ARCHIVES),)
.PHONY: images
images: sync
	bootstrap/build-images.sh $(IMAGE_ARGS) $(IMAGES)

# Control service + alert page on :8000, local Ray, MLflow on SQLite, ONNX Runtime serving; Ctrl-C stops all.
.PHONY: up
up: sync
	$(UV) run --frozen polyp-up
