# Keelson's two commands are `make run` and `make test`; both install what
# they need first.
GO        ?= go
BIN       := bin/keelson
DATA_DIR  ?= $(CURDIR)/.keelson
EXAMPLE   ?= examples/guestbook
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Build tags that leave out what would make the linker keep code Keelson never
# runs (TestLinkerDropsUnusedMethods checks it still can):
#   - no_dynamic_plugins, kustomize_disable_go_plugin_support: containerd's and
#     kustomize's Go plugin loaders. Importing the standard library's plugin
#     package makes the linker keep and export every symbol and link with cgo;
#     without cgo the binary is static.
#   - grpcnotrace, no_gogo: gRPC's golang.org/x/net/trace pages (html/template)
#     and typeurl's gogo/protobuf decoding. Both call methods by computed
#     names through reflect, and one such call anywhere makes the linker keep
#     every exported method of every type (k8s.io/api's protobuf code
#     included): 69 MB instead of 53.
# A smaller executable is less to map in: the agent's and controller's RSS
# (BenchmarkAgent50Pods, BenchmarkControllerScale).
export GOFLAGS += -tags=no_dynamic_plugins,kustomize_disable_go_plugin_support,grpcnotrace,no_gogo
export CGO_ENABLED ?= 0

.PHONY: all deps build run down test bench generate lint fuzz clean

all: build

deps:
	@hack/install-deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/keelson

# Runs Keelson on its example repository: this checkout is the Git source and
# $(EXAMPLE) the manifests, so a commit here is applied within a second. The
# example's image is built from this repository's sources (no registry).
run: deps build
	$(GO) run ./hack/imagebuild -pkg ./examples/apps/guestbook -ref keelson.local/guestbook:dev -out $(DATA_DIR)/images/guestbook.tar
	$(BIN) up --repo $(CURDIR) --path $(EXAMPLE) --data-dir $(DATA_DIR)

# Stops and removes what `make run` started.
down: build
	$(BIN) down --data-dir $(DATA_DIR)

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) run ./cmd/keelson validate $(EXAMPLE)

# Prints every benchmark's figures with the targets beside them.
bench: deps
	hack/bench.sh

generate:
	$(GO) generate ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fuzz:
	$(GO) test ./manifest -run '^$$' -fuzz FuzzLoad -fuzztime 60s

clean:
	rm -rf bin
