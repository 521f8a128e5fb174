# xlb build. Every target that needs a tool installs it from Debian's
# packages when it is missing, so `sudo make test` works on a fresh Debian 12.

GO      ?= go
GOFLAGS ?=
PKGS    := ./...
# Debian package for each command the build or the tests run.
APT_PKGS := clang:clang llc:llvm bpftool:bpftool keepalived:keepalived \
            ip:iproute2 ethtool:ethtool nsenter:util-linux tcpdump:tcpdump \
            bird:bird2 gcc:gcc promtool:prometheus chromium:chromium lintian:lintian \
            systemd-analyze:systemd
BPF_HDR  := /usr/include/bpf/bpf_helpers.h

.PHONY: all deps generate check-generated build test test-unit test-race bench lint demo demo-bgp demo-tun vagrant deb clean

all: build

# deps installs what is missing, and only that: a machine that has it all
# runs no apt-get at all.
deps:
	@missing=""; \
	for p in $(APT_PKGS); do cmd=$${p%%:*}; pkg=$${p#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; done; \
	[ -f $(BPF_HDR) ] || missing="$$missing libbpf-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# generate runs bpf2go (pinned in go.mod) for every //go:generate line.
generate: deps
	$(GO) generate ./internal/...

# check-generated regenerates the BPF objects and fails when they differ
# from what is committed: the committed .o is what `go build` embeds.
check-generated: generate
	@git diff --exit-code --stat -- '*_bpfel.go' '*_bpfel.o' '*_bpfel_test.go' '*_bpfel_test.o' || \
	  { echo "bpf2go output differs from the committed files: run 'make generate' and commit" >&2; exit 1; }

# The version and commit `xlb version` prints.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -o bin/xlb ./cmd/xlb

# test runs every layer. BPF and namespace tests need root; without it they
# skip and say why.
test: deps
	$(GO) vet $(PKGS)
	$(GO) test $(GOFLAGS) -count=1 -timeout 15m $(PKGS)

test-unit:
	$(GO) test $(GOFLAGS) -count=1 -short $(PKGS)

# test-race runs every test under the race detector, the daemon the
# end-to-end tests start included.
test-race: deps
	XLB_TEST_BUILDFLAGS=-race $(GO) test $(GOFLAGS) -race -count=1 -timeout 30m $(PKGS)

bench: deps
	$(GO) test $(GOFLAGS) -run '^$$' -bench . -benchmem -count=1 -timeout 30m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt:"; echo "$$out"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

demo: deps build
	./scripts/demo.sh

# demo-bgp: three balancers share the VIP behind a BIRD router's ECMP.
demo-bgp: deps build
	./scripts/demo-bgp.sh

# demo-tun: one service with a DR real server and a TUN one behind a router.
demo-tun: deps build
	./scripts/demo-tun.sh

# vagrant builds the same topology as VMs (Vagrantfile). The binaries are
# built here, static, since the VMs' Debian Go is too old to build xlb.
vagrant:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -o bin/xlb ./cmd/xlb
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o bin/rsserver ./internal/testutil/cmd/rsserver
	vagrant up

# deb builds bin/xlb_<version>_amd64.deb with nfpm (pinned in go.mod as a
# tool): the binary (stripped), the systemd unit with the packaged path,
# an example configuration in /etc/xlb, xlb(8) from the CLI's own help and
# a changelog. A tag v1.2.3 gives 1.2.3 (1.2.3+4+gabc after it); an
# untagged tree is 0.0~git<commit>, which sorts below any release. PIE and
# full RELRO are Debian's hardening defaults (lintian checks them).
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E '/^v?[0-9]+\./!s/^/0.0~git/; s/^v//; s/-dirty$$/~dirty/; s/-/+/g')
DEB_DATE    := $(shell git log -1 --format=%aD 2>/dev/null || date -R)
DEB_OUT     ?= bin
deb:
	rm -rf bin/deb && mkdir -p bin/deb
	$(GO) build $(GOFLAGS) -trimpath -buildmode=pie -ldflags "-s -w -linkmode=external -extldflags=-Wl,-z,relro,-z,now $(LDFLAGS)" -o bin/deb/xlb ./cmd/xlb
	sed 's|/usr/local/sbin/xlb|/usr/sbin/xlb|g' contrib/xlb.service > bin/deb/xlb.service
	bin/deb/xlb man | gzip -9n > bin/deb/xlb.8.gz
	printf 'xlb (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
	  '$(DEB_VERSION)' '$(COMMIT)' "$$(sed -n 's/^maintainer: //p' packaging/nfpm.yaml)" '$(DEB_DATE)' | gzip -9n > bin/deb/changelog.gz
	DEB_VERSION='$(DEB_VERSION)' $(GO) tool nfpm package --config packaging/nfpm.yaml --packager deb --target $(DEB_OUT)/xlb_$(DEB_VERSION)_amd64.deb

clean:
	rm -rf bin
