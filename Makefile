# cubekv developer targets. The README's two commands need none of this.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
BIN     := bin

.PHONY: build test integ lint tidy thrift verify-thrift bench-engine cluster ci clean release docker

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kvnode ./cmd/kvnode
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kvctl ./cmd/kvctl

test:
	$(GO) test -race ./...

integ:
	$(GO) test -race -count=1 -v ./tests/integration/

lint:
	@test -z "$$(gofmt -s -l $$(git ls-files '*.go'))" || { gofmt -s -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

tidy:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

thrift:
	$(GO) generate ./thrift

verify-thrift:
	$(GO) test -count=1 -run TestGeneratedCodeIsCurrent ./thrift/

bench-engine:
	$(GO) test -run '^$$' -bench 'Get|Put|Scan' -benchmem ./storage/ ./fsm/
	$(GO) test -run '^$$' -bench HeapPerEntry -benchtime 1x ./storage/

ci:
	bash .ci/run

clean:
	rm -rf $(BIN)

# A three-node cluster on 127.0.0.1 in the foreground; Ctrl-C stops it.
cluster:
	bash deploy/local-cluster.sh

# Static release binaries of kvnode and kvctl for the boards (linux/arm with
# GOARM=7, linux/arm64) and for amd64, in bin/<os>-<arch>/, with SHA256SUMS.
RELEASE_PLATFORMS := linux/arm linux/arm64 linux/amd64

release:
	@set -e; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=$(BIN)/$$os-$$arch; mkdir -p $$out; \
		for cmd in kvnode kvctl; do \
			echo "build $$out/$$cmd"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=7 \
				$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out/$$cmd ./cmd/$$cmd; \
		done; \
	done
	cd $(BIN) && sha256sum $(foreach p,$(RELEASE_PLATFORMS),$(subst /,-,$(p))/kvnode $(subst /,-,$(p))/kvctl) >SHA256SUMS
	@cd $(BIN) && ls -l $(foreach p,$(RELEASE_PLATFORMS),$(subst /,-,$(p))/kvnode $(subst /,-,$(p))/kvctl)

# The kvnode image (FROM scratch, no registry needed): the static binaries are
# built on the host and are the whole build context (see deploy/Dockerfile).
DOCKER_IMAGE ?= cubekv/kvnode:dev
DOCKER_ARCH  ?= $(shell $(GO) env GOARCH)
DOCKER_CTX   := $(BIN)/docker-context

docker:
	rm -rf $(DOCKER_CTX) && mkdir -p $(DOCKER_CTX)/data
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DOCKER_ARCH) GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DOCKER_CTX)/kvnode ./cmd/kvnode
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DOCKER_ARCH) GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DOCKER_CTX)/kvctl ./cmd/kvctl
	docker build -f deploy/Dockerfile -t $(DOCKER_IMAGE) $(DOCKER_CTX)
