# cubekv developer targets. The README's two commands need none of this.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
BIN     := bin

.PHONY: build test integ lint tidy thrift verify-thrift bench-engine cluster ci clean

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
