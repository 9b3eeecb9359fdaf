# The two commands a new user needs are in README.md:
#   go run ./examples/quickstart     (the main job, embedded default)
#   make test                        (everything CI runs)
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
export GOFLAGS := -buildvcs=false

# Every module of the workspace (go.work), as package patterns: ./... stops
# at a nested module's go.mod, so it alone would skip kms/awskms, kms/pkcs11…
PKGS := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null | sed 's|^$(CURDIR)|.|; s|$$|/...|')

MINIO_MODULE       := github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
LOCAL_KMS_MODULE   := github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6
STATICCHECK_MODULE := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test tools apt chromium redis softhsm2 lint unit bench bench-kms replay fuzz tidy clean

## test: install the tools into ./bin if missing, then gofmt, vet, staticcheck, go test -race
test: tools lint unit

tools: $(BIN)/minio $(BIN)/staticcheck $(BIN)/local-kms chromium redis softhsm2

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

# Debian's SoftHSM2, the PKCS#11 token the HSM KEK tests (kms/pkcs11) initialise
# in a temporary directory. Installed when missing and we may (root with
# apt-get); elsewhere those tests skip, except under CI=true, where they fail.
softhsm2:
	@if [ -e /usr/lib/softhsm/libsofthsm2.so ]; then :; \
	 elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	   echo "installing Debian's softhsm2 for the PKCS#11 tests"; \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; \
	 else echo "note: softhsm2 missing and cannot be installed here; the PKCS#11 tests will skip"; fi

# local-kms, the AWS KMS stand-in the kms/awskms tests start on a free port:
# built from $(LOCAL_KMS_MODULE)'s packages by tools/localkms, which listens on
# 127.0.0.1 only (the upstream command listens on every interface). A module
# of its own, outside the workspace.
$(BIN)/local-kms: tools/localkms/main.go tools/localkms/go.mod tools/localkms/go.sum
	cd tools/localkms && GOWORK=off $(GO) build -o $(BIN)/local-kms .

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

unit: $(BIN)/minio $(BIN)/local-kms
	MINIO_BIN=$(BIN)/minio LOCAL_KMS_BIN=$(BIN)/local-kms $(GO) test -race -timeout 20m $(PKGS)

## bench-kms: KEK costs: rewrap rate and memory (fs, MinIO; local keyset, local-kms), Put/Redeem and a KEK round trip with local-kms
bench-kms: $(BIN)/minio $(BIN)/local-kms
	MINIO_BIN=$(BIN)/minio LOCAL_KMS_BIN=$(BIN)/local-kms $(GO) test -run '^$$' -bench 'Rewrap' -benchtime 1x ./examples/keysinprod/
	LOCAL_KMS_BIN=$(BIN)/local-kms $(GO) test -run '^$$' -bench 'PutRedeem|KEKRoundTrip' -benchtime 300x ./examples/keysinprod/

## bench: idvault against plain MinIO GET/PUT, presigned URLs, age and raw AES-GCM, in one run
bench: $(BIN)/minio
	MINIO_BIN=$(BIN)/minio $(GO) run ./bench $(BENCHFLAGS)

## replay: the 2021 incident and every strategy of issues 14 and 22 replayed
## against idvault with the defaults and with the opt-out (AlertOnly), 5,000
## documents, 6 simulated days, the honest team; prints the table of docs/abuse.md
replay:
	$(GO) test -count=1 -v -timeout 30m -run '^TestReplay(Incident|Strategies)$$' ./vault/

## fuzz: each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## tidy: go mod tidy in every module; the nested ones require the unreleased
## root module, so they are tidied against a module proxy built from this checkout
## (docs/releasing.md), and go.sum keeps no checksum of that build.
NESTED := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null | sed 's|^$(CURDIR)/||' | grep -v '^$(CURDIR)$$')
tidy:
	$(GO) mod tidy
	@proxy=$$(mktemp -d) && trap 'rm -rf $$proxy' EXIT && \
	 $(GO) run ./internal/release/modproxy $$proxy && \
	 for d in $(NESTED); do \
	   echo "go mod tidy in $$d"; \
	   (cd $$d && GOWORK=off GOFLAGS=-mod=mod GOPROXY=file://$$proxy,$$($(GO) env GOPROXY) \
	     GONOSUMDB=github.com/idvault/idvault $(GO) mod tidy) || exit 1; \
	   sed -i '\|^github.com/idvault/idvault[ /]|d' $$d/go.sum; \
	 done

clean:
	rm -rf $(BIN)
