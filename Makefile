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

tools: $(BIN)/minio $(BIN)/staticcheck $(BIN)/local-kms apt

# Debian packages the tests need, each found by the file the tests use:
#   chromium      /usr/bin/chromium                the sample app's browser test (examples/agegate)
#   redis-server  redis-server on PATH             the Redis limiter's tests (vault/redislimiter)
#   softhsm2      /usr/lib/softhsm/libsofthsm2.so  the PKCS#11 KEK tests (kms/pkcs11)
# The missing ones are installed in one apt-get run when we may (root with
# apt-get, as CI is). Elsewhere their tests skip, except under CI=true, where
# this target fails at once with what is missing, rather than after the suite.
CHROMIUM     ?= /usr/bin/chromium
SOFTHSM2_LIB ?= /usr/lib/softhsm/libsofthsm2.so

apt:
	@missing=""; \
	 [ -x "$(CHROMIUM)" ] || missing="$$missing chromium"; \
	 command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	 [ -e "$(SOFTHSM2_LIB)" ] || missing="$$missing softhsm2"; \
	 if [ -z "$$missing" ]; then exit 0; fi; \
	 if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	   echo "installing Debian's$$missing for the tests"; \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null \
	     || { echo "error: apt-get install$$missing failed"; exit 1; }; \
	 elif [ "$$CI" = true ]; then \
	   echo "error: CI=true and Debian's$$missing missing; install as root: apt-get install$$missing"; exit 1; \
	 else echo "note:$$missing missing and not installable here (not root, or no apt-get): their tests will skip"; fi

chromium redis softhsm2: apt

# local-kms, the AWS KMS stand-in the kms/awskms tests start on a free port:
# built from $(LOCAL_KMS_MODULE)'s packages by tools/localkms, which listens on
# 127.0.0.1 only (the upstream command listens on every interface). A module
# of its own, outside the workspace.
$(BIN)/local-kms: tools/localkms/main.go tools/localkms/go.mod tools/localkms/go.sum
	@echo "building local-kms (the AWS KMS stand-in, 127.0.0.1 only) into ./bin"
	cd tools/localkms && GOWORK=off $(GO) build -o $(BIN)/local-kms .

# The pinned MinIO server the S3 tests start on 127.0.0.1 (a few minutes the first time).
$(BIN)/minio:
	@echo "installing MinIO server into ./bin (first time only, takes a few minutes)"
	GOBIN=$(BIN) $(GO) install $(MINIO_MODULE)

$(BIN)/staticcheck:
	@echo "installing staticcheck into ./bin"
	GOBIN=$(BIN) $(GO) install $(STATICCHECK_MODULE)

lint: $(BIN)/staticcheck
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$fmt" ]; then echo "gofmt would change: $$fmt"; exit 1; fi
	$(GO) vet $(PKGS)
	$(BIN)/staticcheck $(PKGS)

unit: $(BIN)/minio $(BIN)/local-kms
	MINIO_BIN=$(BIN)/minio LOCAL_KMS_BIN=$(BIN)/local-kms $(GO) test -race -timeout 40m $(PKGS)

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
