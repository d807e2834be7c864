# cvmfs-snapshotter: a containerd remote snapshotter serving CVMFS layers through FUSE.

GO        ?= go
BUILD     ?= $(CURDIR)/_build
BIN       := $(BUILD)/bin
# Tools the tests need (containerd 2.x, ...) are installed here and cached.
TOOLS     := $(BUILD)/tools
GOFLAGS   ?=
PKGS      := ./...
BENCHTIME ?= 1x

SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

export CVMFS_TEST_BIN   := $(BIN)
export CVMFS_TEST_TOOLS := $(TOOLS)

.PHONY: help build deps test unit e2e race bench demo check lint fuzz clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build cvmfs-snapshotter and cvmfsctl into _build/bin
	$(GO) build $(GOFLAGS) -o $(BIN)/ ./cmd/...

deps: ## install what the tests need (apt packages, containerd 2.x built with go install; cached)
	bash hack/deps.sh "$(TOOLS)"

test: deps build ## run every test: unit, root, FUSE, containerd conformance, end to end (race detector on)
	$(GO) test $(GOFLAGS) -race -count=1 -timeout 60m $(PKGS)
	@echo "== containerd snapshotter conformance suite, verbose =="
	$(GO) test $(GOFLAGS) -count=1 -v -run '^TestConformance$$' ./snapshot/ | grep -E -- '^(\s*--- (PASS|FAIL|SKIP)|ok|FAIL)|_test\.go:[0-9]+:|panic:'
	@echo "== FUSE and snapshot tests again with GOMAXPROCS=1 (surfaces FUSE self-deadlocks) =="
	GOMAXPROCS=1 $(GO) test $(GOFLAGS) -count=1 -timeout 20m ./fusefs/... ./snapshot/...
	$(MAKE) --no-print-directory fuzz

e2e: deps build ## run only the end-to-end scenarios (real containerd, runc, registry)
	$(GO) test $(GOFLAGS) -count=1 -v -timeout 30m ./test/... 2>&1 | grep -E -- '^(\s*--- |ok|FAIL|PASS)|_test\.go:[0-9]+:|panic:'

unit: ## run the tests that need neither root nor containerd
	CVMFS_UNIT_ONLY=1 $(GO) test $(GOFLAGS) -count=1 $(PKGS)

FUZZTIME ?= 15s
fuzz: ## run every fuzz target for FUZZTIME each
	bash hack/fuzz.sh $(FUZZTIME)

# Extra flags of bench, e.g. BENCHFLAGS="-variants fuse/open -reps 5".
BENCHFLAGS ?=
BENCHOUT   ?= bench/results

bench: deps build ## run the benchmarks: fusefs/snapshot (native vs bind vs FUSE), then containers vs overlayfs (results in bench/results, tables in docs/performance.md)
	$(GO) test $(GOFLAGS) -run '^$$' -bench . -benchtime $(BENCHTIME) ./fusefs/... ./snapshot/... ./cmd/cvmfs-snapshotter/
	$(GO) run ./bench -out $(BENCHOUT) -doc docs/performance.md $(BENCHFLAGS)

demo: deps build ## run the product on an embedded local repository, registry and containerd
	$(GO) run ./test/demo

check: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

lint: check ## alias of check

clean: ## remove build output (keeps the tool cache)
	rm -rf $(BIN)
