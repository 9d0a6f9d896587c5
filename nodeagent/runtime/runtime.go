package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
)

// Error kinds. Errors returned by this package wrap one of these (or a containerd errdefs
// kind) with the container or image they are about; check them with errors.Is.
var (
	// ErrUnavailable: containerd cannot be reached right now; retry later.
	ErrUnavailable = errors.New("containerd unavailable")
	// ErrNotFound: no such container or task.
	ErrNotFound = errors.New("not found")
	// ErrImageNeverPull: the image is absent and the pull policy is Never.
	ErrImageNeverPull = errors.New("image not present and pull policy is Never")
	// ErrImageNotFound: the registry has no such image (manifest unknown, 404).
	ErrImageNotFound = errors.New("image not found")
	// ErrRegistryUnavailable: the registry could not be reached.
	ErrRegistryUnavailable = errors.New("registry unavailable")
	// ErrRegistryUnauthorized: the registry refused the credentials (401/403).
	ErrRegistryUnauthorized = errors.New("registry unauthorized")
	// ErrClosed: the Runtime was closed.
	ErrClosed = errors.New("runtime closed")
	// ErrCommandNotFound: the container's command is not in the image.
	ErrCommandNotFound = errors.New("command not found in image")
	// ErrRunAsRoot: the container must not run as root (runAsNonRoot) and
	// would, or its image's user cannot be known not to be root.
	ErrRunAsRoot = errors.New("runAsNonRoot")
)

// DefaultSnapshotter is the snapshotter images are unpacked into and containers run on.
const DefaultSnapshotter = "overlayfs"

// runcRuntime is the containerd runtime (shim) containers run with.
const runcRuntime = "io.containerd.runc.v2"

// Options tune a Runtime.
type Options struct {
	// InsecureRegistries are registry hosts (host or host:port) pulled from over plain
	// HTTP. Registries on 127.0.0.1, localhost and ::1 always are.
	InsecureRegistries []string
	// Snapshotter defaults to DefaultSnapshotter.
	Snapshotter string
}

// Option sets an Option field.
type Option func(*Options)

// WithInsecureRegistries allows plain HTTP for the given registry hosts.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *Options) { o.InsecureRegistries = append(o.InsecureRegistries, hosts...) }
}

// WithSnapshotter sets the snapshotter.
func WithSnapshotter(name string) Option {
	return func(o *Options) { o.Snapshotter = name }
}

// Runtime runs containers in one containerd namespace. It is safe for concurrent use; it
// owns one goroutine per container being waited on (see Wait) and one OOM event
// subscriber, all of which Close stops and waits for.
type Runtime struct {
	client    *containerd.Client
	namespace string
	opts      Options
	log       *slog.Logger
	// runcRoot is runc's state directory for this containerd: each private
	// containerd has its own, so that agents (and tests) sharing a machine
	// never see each other's container IDs.
	runcRoot string

	// alive is cancelled by Close: its Done is what the Runtime's
	// goroutines stop on, and it is the parent of lifetime's contexts.
	alive     context.Context
	stopAlive context.CancelFunc
	wg        sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	waiters map[string]*waiter // container id -> watcher of its task's exit
	ooms    map[string]bool    // container ids that had an OOM event
}

// Connect connects to the containerd at socket and runs containers in namespace. The
// client reconnects by itself when containerd restarts; meanwhile calls fail with errors
// that satisfy errors.Is(err, ErrUnavailable).
func Connect(ctx context.Context, socket, namespace string, log *slog.Logger, opts ...Option) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var o Options
	for _, opt := range opts {
		opt(&o)
	}
	if o.Snapshotter == "" {
		o.Snapshotter = DefaultSnapshotter
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := containerd.New(socket,
		containerd.WithDefaultNamespace(namespace),
		containerd.WithTimeout(10*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to containerd %s: %w", socket, classify(err))
	}
	if _, err := client.Version(namespaces.WithNamespace(dialCtx, namespace)); err != nil {
		client.Close()
		return nil, fmt.Errorf("connect to containerd %s: %w", socket, classify(err))
	}
	r := &Runtime{
		client:    client,
		namespace: namespace,
		opts:      o,
		log:       log.With("component", "runtime", "namespace", namespace),
		waiters:   map[string]*waiter{},
		ooms:      map[string]bool{},
		runcRoot:  RuncRoot(socket),
	}
	r.alive, r.stopAlive = context.WithCancel(namespaces.WithNamespace(context.Background(), namespace))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.watchOOM()
	}()
	return r, nil
}

// Client is the underlying containerd client, for callers that need more than this package
// offers. It is owned by the Runtime: do not close it.
func (r *Runtime) Client() *containerd.Client { return r.client }

// Namespace is the containerd namespace the Runtime works in.
func (r *Runtime) Namespace() string { return r.namespace }

// Close stops the Runtime's goroutines and closes the connection. Containers keep running.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.stopAlive()
	r.mu.Unlock()
	r.wg.Wait()
	RemoveEmptyCgroup(r.cgroupParent())
	return r.client.Close()
}

// cgroupParent is the cgroup the Runtime's containers go under when their
// spec names none: one per containerd and namespace.
func (r *Runtime) cgroupParent() string {
	return "/" + r.namespace + "-" + filepath.Base(r.runcRoot)
}

// RemoveEmptyCgroup removes the cgroup at path (relative to the cgroup
// roots) from every hierarchy where it is empty. runc makes a container's
// parent cgroups and removes only the container's own: without this, every
// containerd that ever ran on the machine (every test, every data
// directory) would leave an empty cgroup in each hierarchy, and each
// cpuset cgroup is one more for the kernel to walk when it rebuilds its
// scheduling domains. A cgroup that still holds containers (they outlive
// the agent) stays: the kernel refuses to remove it. Benchmarks that run
// Debian's ctr use it for the cgroup ctr makes per containerd namespace.
func RemoveEmptyCgroup(path string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", path))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", path)) // cgroup v2 alone
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// ctx returns ctx in the Runtime's namespace.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.namespace)
}

// lifetime returns a context in the Runtime's namespace that is cancelled by Close.
func (r *Runtime) lifetime() (context.Context, context.CancelFunc) {
	return context.WithCancel(r.alive)
}

// classify maps transport failures to ErrUnavailable and not-found to ErrNotFound, keeping
// the original error in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNotFound):
		return err
	case errdefs.IsUnavailable(err), isConnErr(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func isConnErr(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "dial") {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "transport is closing") ||
		strings.Contains(s, "error reading from server: EOF") || strings.Contains(s, "connection reset")
}

// RuncRoot is the runc state directory of the containers of the containerd
// at socket.
func RuncRoot(socket string) string {
	if abs, err := filepath.Abs(socket); err == nil {
		socket = abs
	}
	sum := sha256.Sum256([]byte(socket))
	return filepath.Join("/run/keelson/runc", hex.EncodeToString(sum[:8]))
}
