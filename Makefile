# kata-go build. `make help` lists the targets.
SHELL := /bin/bash
# Debian's Go lives here when it is not on root's PATH.
export PATH := /usr/local/go/bin:$(PATH)
PREFIX ?= /usr/local
SHAREDIR ?= $(PREFIX)/share/kata-go
CONFDIR ?= /etc/kata-go
GO ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
GUEST_OUT := guest/out
AGENT_TAGS := seccomp netgo osusergo
LDFLAGS := -s -w -X main.version=$(VERSION)
# The agent's version comes from its source only, so an unrelated commit
# does not change its bytes (and force a new initrd).
AGENT_VERSION := $(shell git log -1 --format=%h -- cmd/agent internal/agent pkg/agentapi 2>/dev/null || echo dev)
AGENT_LDFLAGS := -s -w -X main.version=$(AGENT_VERSION)

.PHONY: all build guest agent install deps test test-unit test-integration bench soak conformance k8s-e2e generate check-generated lint clean help

all: build guest

help:
	@echo "build      shim binary into bin/"
	@echo "guest      guest kernel (cached by input hash) and initrd into $(GUEST_OUT)/"
	@echo "install    shim, guest files and config into $(PREFIX) and $(CONFDIR)"
	@echo "test       unit tests, then the integration tier (root, QEMU, containerd)"
	@echo "bench      start-time, exec, throughput and memory against runc"
	@echo "conformance critest (handler kata) against containerd 1.6 and 2.4, offline"
	@echo "k8s-e2e    a real kubelet (standalone, static pods) on containerd 2.4 with kata-go"
	@echo "generate   regenerate the agent protocol from pkg/agentapi/agent.proto"
	@echo "lint       gofmt, go vet, staticcheck, generated code and go.mod up to date"

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/containerd-shim-kata-v2 ./cmd/containerd-shim-kata-v2

# The agent is PID 1 in a guest with no libc: link it statically (cgo is
# needed by libcontainer's nsenter and by libseccomp).
# The agent binary is replaced only when its bytes change, so an unchanged
# agent leaves the initrd (and everything after it) untouched.
agent:
	@mkdir -p bin
	CGO_ENABLED=1 $(GO) build -trimpath -tags "$(AGENT_TAGS)" -ldflags "$(AGENT_LDFLAGS) -extldflags -static" -o bin/kata-go-agent.new ./cmd/agent
	@if cmp -s bin/kata-go-agent.new bin/kata-go-agent; then rm bin/kata-go-agent.new; else mv bin/kata-go-agent.new bin/kata-go-agent; fi

$(GUEST_OUT)/initrd.img: bin/kata-go-agent guest/mkinitrd/main.go
	@mkdir -p $(GUEST_OUT)
	$(GO) run ./guest/mkinitrd -agent bin/kata-go-agent -o $@

# A second run is a no-op: the kernel comes from its cache, the initrd is
# rebuilt only when the agent changed.
guest: agent
	guest/build-kernel.sh $(GUEST_OUT)
	@$(MAKE) --no-print-directory $(GUEST_OUT)/initrd.img
	@ls -l $(GUEST_OUT)/vmlinux $(GUEST_OUT)/initrd.img

install: build guest
	install -D -m 0755 bin/containerd-shim-kata-v2 $(PREFIX)/bin/containerd-shim-kata-v2
	install -D -m 0644 $(GUEST_OUT)/vmlinux $(SHAREDIR)/vmlinux
	install -D -m 0644 $(GUEST_OUT)/initrd.img $(SHAREDIR)/initrd.img
	@if [ ! -e $(CONFDIR)/configuration.toml ]; then install -D -m 0644 config/configuration.toml $(CONFDIR)/configuration.toml; fi

deps:
	hack/install-deps.sh --test-tools

# Everything: generated code and style, unit tests, then the integration
# tier (root, QEMU, containerd 1.6 and 2.4).
test: deps lint test-unit test-integration

test-unit:
	$(GO) test -race -count=1 ./...

# test/client is its own module (containerd 2.4's Go client, see its doc.go):
# the same-as-runc scenarios run after the rest of the tier.
test-integration: build guest
	$(GO) test -tags integration -count=1 -v -timeout 60m ./test/integration/ 2>&1 | tee /tmp/kata-go-integration.log; exit $${PIPESTATUS[0]}
	cd test/client && $(GO) test -tags integration -count=1 -v -timeout 30m ./... 2>&1 | tee /tmp/kata-go-client.log; exit $${PIPESTATUS[0]}

bench: build guest
	$(GO) run ./bench

soak: build guest
	KATA_GO_SOAK=200 $(GO) test -tags integration -count=1 -v -timeout 120m -run Soak ./test/integration/

# critest with handler kata on both daemons, from a local registry of
# stand-in images (docs/conformance.md). CONFORMANCE_FLAGS adds e.g.
# -handlers kata,runc or -focus REGEXP.
conformance: build guest
	hack/install-deps.sh --test-tools
	hack/conformance-deps.sh
	$(GO) run ./test/conformance $(CONFORMANCE_FLAGS)

# A real kubelet (hack/build-kubelet.sh builds it from the module proxy)
# in standalone mode against a private containerd 2.4 whose default
# runtime is kata-go (docs/kubernetes.md, "Real kubelet").
k8s-e2e: build guest
	hack/install-deps.sh --test-tools && hack/build-kubelet.sh && $(GO) test -tags k8se2e -count=1 -v -timeout 30m ./test/k8s/

generate:
	GOBIN=$(CURDIR)/bin $(GO) install tool
	PATH=$(CURDIR)/bin:$$PATH protoc -I pkg/agentapi \
		--go_out=paths=source_relative:pkg/agentapi \
		--go-ttrpc_out=paths=source_relative:pkg/agentapi \
		pkg/agentapi/agent.proto

check-generated: generate
	@git diff --exit-code -- pkg/agentapi || { echo "generated code differs from agent.proto: run make generate and commit"; exit 1; }

lint: check-generated
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit"; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./... && $(GO) vet -tags integration ./test/integration/
	$(GO) tool staticcheck ./... && $(GO) tool staticcheck -tags integration ./test/integration/
	cd test/client && $(GO) vet -tags integration ./... && $(GO) tool staticcheck -tags integration ./... && $(GO) mod tidy -diff

clean:
	rm -rf bin $(GUEST_OUT)
