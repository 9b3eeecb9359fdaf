# The two commands a new user needs are in README.md:
#   go run ./examples/quickstart     (the main job, embedded default)
#   make test                        (everything CI runs)
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
export GOFLAGS := -buildvcs=false

MINIO_MODULE       := github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
STATICCHECK_MODULE := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Every package of every module in go.work: `./...` at the root stops at a
# nested go.mod, so list the workspace's modules instead.
PKGS = $(shell $(GO) list -m -f '{{.Dir}}/...')

.PHONY: test tools chromium redis lint unit bench replay fuzz clean

## test: install the tools into ./bin if missing, then gofmt, vet, staticcheck, go test -race
test: tools lint unit

tools: $(BIN)/minio $(BIN)/staticcheck chromium redis

# Debian's Chromium, for the sample app's end-to-end browser test. Installed
# when missing and we may (root with apt-get); elsewhere that test skips,
# except under CI=true, where it fails.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	 elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	   echo "installing Debian's chromium for the browser test"; \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	 else echo "note: /usr/bin/chromium missing and cannot be installed here; the browser test will skip"; fi

# Debian's redis-server, for the Redis limiter's tests (vault/redislimiter),
# which start their own on 127.0.0.1. Installed like Chromium; under CI=true
# those tests fail without it.
redis:
	@if command -v redis-server >/dev/null 2>&1; then :; \
	 elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	   echo "installing Debian's redis-server for the Redis limiter tests"; \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	 else echo "note: redis-server missing and cannot be installed here; the Redis limiter tests will skip"; fi

# The pinned MinIO server the S3 tests start on 127.0.0.1 (a few minutes the first time).
$(BIN)/minio:
	@echo "installing MinIO server into ./bin (first time only, takes a few minutes)"
	GOBIN=$(BIN) $(GO) install $(MINIO_MODULE)

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install $(STATICCHECK_MODULE)

lint: $(BIN)/staticcheck
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$fmt" ]; then echo "gofmt would change: $$fmt"; exit 1; fi
	$(GO) vet $(PKGS)
	$(BIN)/staticcheck $(PKGS)

unit: $(BIN)/minio
	MINIO_BIN=$(BIN)/minio $(GO) test -race -timeout 20m $(PKGS)

## bench: idvault against plain MinIO GET/PUT, presigned URLs, age and raw AES-GCM, in one run
bench: $(BIN)/minio
	MINIO_BIN=$(BIN)/minio $(GO) run ./bench $(BENCHFLAGS)

## replay: the 2021 incident and every strategy of issue 14 replayed against
## idvault (5,000 documents, 6 simulated days, the honest team), printing the table
replay:
	$(GO) test -count=1 -v -timeout 20m -run Replay ./cmd/idvault/

## fuzz: each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
