# The README's two commands are `make up` and `make test`; everything else they need is here.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Pinned tool versions.
UV_VERSION          := 0.13.9
HELM_VERSION        := v3.19.0
KUBECONFORM_VERSION := v0.7.0
ACTIONLINT_VERSION  := v1.7.7

TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
export GOBIN := $(TOOLS_BIN)
UV := uv

.PHONY: help
help:
	@echo "make up        run the platform's main loop locally on embedded defaults"
	@echo "make test      install what the tests need and run them all (what CI runs)"
	@echo "make test-fast the same minus the slow tiers (Ray, Triton, browser, training): a few minutes"
	@echo "make validate  render dev, staging and prod as Argo CD would and validate every object"
	@echo "make tools     install pinned helm, kubeconform, actionlint (go install); promtool, redis-server, chromium (apt)"
	@echo "make lint      ruff, shellcheck and actionlint"
	@echo "make images    build the platform's images (needs a Docker engine; CI builds them)"

# ---- tools ----------------------------------------------------------------------------------
$(TOOLS_BIN)/helm:
	go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(TOOLS_BIN)/kubeconform:
	go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

$(TOOLS_BIN)/actionlint:
	go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

# Debian packages the tests run for real: promtool (prometheus), redis-server, chromium (browser test).
# `env VAR=...`: with SUDO empty (root) a bare `VAR=... apt-get` after $$SUDO would be taken as the command name.
.PHONY: system-packages
system-packages:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

.PHONY: go-tools
go-tools: $(TOOLS_BIN)/helm $(TOOLS_BIN)/kubeconform $(TOOLS_BIN)/actionlint

.PHONY: tools
tools: go-tools system-packages
	@helm version --short; kubeconform -v; actionlint -version | head -1; promtool --version | head -1

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
.PHONY: validate
validate: tools sync
	$(UV) run --frozen polyp-gitops validate

.PHONY: test
test: tools sync
	$(UV) run --frozen pytest

# The developer loop: everything but the slow tiers (Ray, Triton, browser, training), in a few minutes.
FAST_TIERS := not (ray or triton or browser or training)
.PHONY: test-fast
test-fast: tools sync
	$(UV) run --frozen pytest -m "$(FAST_TIERS)"

.PHONY: lint
lint: tools sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen shellcheck bootstrap/install.sh .ci/run
	$(UV) run --frozen actionlint   # checks run: scripts with the venv's shellcheck

IMAGE_REGISTRY ?= ghcr.io/polyp-mlops
IMAGE_TAG      ?= $(shell git rev-parse HEAD)
IMAGES := control-service=services/control/Dockerfile frontend=services/frontend/Dockerfile training=training/Dockerfile

.PHONY: images
images:
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine here; the images workflow builds them" >&2; exit 2; }
	@for image in $(IMAGES); do \
	  docker build -f "$${image#*=}" -t "$(IMAGE_REGISTRY)/$${image%%=*}:$(IMAGE_TAG)" . ; \
	done

# Control service + alert page on :8000, local Ray, MLflow on SQLite, ONNX Runtime serving; Ctrl-C stops all.
.PHONY: up
up: sync
	$(UV) run --frozen polyp-up
