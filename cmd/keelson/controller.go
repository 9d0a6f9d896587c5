package main

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	k8sresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/keelson/keelson/apiserver"
	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/internal/exepages"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/reconciler"
	"github.com/keelson/keelson/store"
)

// bigLoad is the number of files decoded in one revision after which the
// controller returns freed memory to the OS at once.
const bigLoad = 500

// defaultGOGC is the controller's GC target when GOGC is not set: the heap
// grows by half its live size between collections. The live heap is mostly
// the store (some 130 MB at 100,000 pods); a tighter target makes the
// passes and the agents' reports pay for more collections than the memory
// it saves is worth (BenchmarkControllerScale: 75 takes 320-356 MB RSS,
// 50 about 300 MB, 30 257 MB at twice the CPU; a 200 MiB memory limit
// 246 MB, but the agents' status reports take four times as long).
const defaultGOGC = 50

// quietGOGC is the GC target between bursts of work (see releaseAfterBursts):
// what the process then allocates is the steady trickle of leases, probes
// and reports, and a collection at a fifth above the live heap costs little
// next to it (BenchmarkControllerScale: at 100,000 pods, one every few
// seconds). With defaultGOGC the heap climbed back to half above its live
// size within seconds of each release, and the controller's RSS swung
// between 205 and 255 MB with nothing happening.
const quietGOGC = 20

// defaultMemoryLimit is --memory-limit's default: 90% of the memory limit
// of the controller's cgroup, if it has one.
const defaultMemoryLimit = "auto"

type controllerOptions struct {
	src               gitsync.Source
	dataDir           string
	listen            string
	interval          time.Duration
	webhookSecretFile string
	logLevel          string
	clusterCIDR       string
	autoRollback      bool
	serviceCIDR       string
	nodePortRange     string
	lbPool            string
	evictionTimeout   time.Duration
	leaseTimeout      time.Duration
	// memoryLimit is the runtime's soft memory limit, a quantity ("300Mi"),
	// "auto" (from the cgroup), or "" or "0" for none.
	memoryLimit string
	pprof       bool
	// writeNotes writes each commit's outcome into refs/notes/keelson.
	writeNotes bool
	// onListen, when set, is told the API's address once it listens (tests).
	onListen func(addr string)
}

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/keelson"
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".local", "share", "keelson")
	}
	return ".keelson"
}

func newControllerCmd() *cobra.Command {
	var o controllerOptions
	cmd := &cobra.Command{
		Use:   "controller --repo URL [--branch B] [--path P] [--data-dir D] [--listen ADDR]",
		Short: "Follow a Git repository and serve its desired state",
		Long: `The controller follows a Git source (a local path, file://, git://, http(s)://,
ssh:// or user@host:path), applies every new commit's manifests to its store
as one transaction, and serves the API. A commit with any error is rejected
whole and the last good one stays applied.

Credentials never come from flags: HTTPS passwords and tokens are read from
--password-file or the environment variable named by --password-env; SSH uses
--ssh-key with host keys checked against --known-hosts.

With --write-notes the controller records what became of each commit
(Healthy, Degraded and why, rolled back, rejected) as a Git note in
refs/notes/keelson, which git log --notes=keelson shows and keelson rollout
history reads after a restart. The credentials must allow a push.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runController(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.src.URL, "repo", "", "Git repository URL or local path (required)")
	f.StringVar(&o.src.Branch, "branch", "", "branch to follow (default: the remote's HEAD)")
	f.StringVar(&o.src.Tag, "tag", "", "tag to follow instead of a branch")
	f.StringVar(&o.src.Commit, "commit", "", "commit to pin instead of a branch")
	f.StringVar(&o.src.Path, "path", "", "sub-directory of the repository holding the manifests")
	addAuthFlags(f, &o.src.Auth)
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where the controller keeps its Git cache")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7676", "address of the API")
	f.DurationVar(&o.interval, "interval", 30*time.Second, "how often to poll the repository")
	f.StringVar(&o.webhookSecretFile, "webhook-secret-file", "", "file holding the HMAC secret that webhook calls must be signed with")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.clusterCIDR, "cluster-cidr", "10.244.0.0/16", "pod addresses, a /24 for each node")
	addServiceFlags(f, &o)
	f.BoolVar(&o.autoRollback, "auto-rollback", false, "return a Deployment whose rollout fails to its previous template (the annotation keelson.dev/auto-rollback on a Deployment overrides it)")
	f.DurationVar(&o.evictionTimeout, "pod-eviction-timeout", 60*time.Second, "how long pods stay on a NotReady node before they are replaced elsewhere")
	f.DurationVar(&o.leaseTimeout, "node-lease-timeout", 40*time.Second, "how long a node may go without renewing its lease before it is NotReady")
	f.StringVar(&o.memoryLimit, "memory-limit", defaultMemoryLimit, "soft limit of the memory the controller's runtime holds, such as 300Mi (0: none; auto: 90% of its cgroup's limit, if any): "+
		"it collects garbage more often near it and gives memory back, at some CPU; a live heap that outgrows it takes it up, to a quarter above itself. GOMEMLIMIT overrides it")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go's profiles under /debug/pprof/ on the API address")
	f.BoolVar(&o.writeNotes, "write-notes", false, "write what became of each commit into the repository's Git notes (refs/notes/keelson): in place for a local repository, pushed with the source's credentials for a remote one")
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

// addAuthFlags adds the flags of the Git source's credentials (controller
// and up): where secrets are read from, never the secrets themselves.
func addAuthFlags(f *pflag.FlagSet, a *gitsync.Auth) {
	f.StringVar(&a.SSHKeyFile, "ssh-key", "", "SSH private key file for ssh:// and user@host:path sources")
	f.StringVar(&a.KnownHostsFile, "known-hosts", "", "known_hosts file to check the SSH server's key (default ~/.ssh/known_hosts)")
	f.StringVar(&a.SSHUser, "ssh-user", "", "SSH user when the URL names none (default git)")
	f.StringVar(&a.Username, "username", "", "HTTPS user name")
	f.StringVar(&a.PasswordFile, "password-file", "", "file holding the HTTPS password or token")
	f.StringVar(&a.PasswordEnv, "password-env", "", "environment variable holding the HTTPS password or token")
}

// validateSource checks the source the flags describe. A password or token
// in --repo is refused with what to use instead: credentials never come
// from flags, which end up in shell history and process listings.
func validateSource(src gitsync.Source) error {
	err := src.Validate()
	if !errors.Is(err, gitsync.ErrCredentialsInURL) {
		return err
	}
	how := "put the password or token in a file and pass --password-file FILE, or in an environment variable and pass --password-env NAME (the user name goes in --username or stays in the URL)"
	if !strings.HasPrefix(src.URL, "http://") && !strings.HasPrefix(src.URL, "https://") {
		how = "authenticate with a key: --ssh-key FILE (and --known-hosts FILE)"
	}
	return fmt.Errorf("--repo %s: the URL carries a password or token, and credentials are never taken from flags: %s", src, how)
}

// addServiceFlags adds the flags of the service network (controller and up).
func addServiceFlags(f *pflag.FlagSet, o *controllerOptions) {
	f.StringVar(&o.serviceCIDR, "service-cidr", "10.96.0.0/12", "the Services' cluster addresses")
	f.StringVar(&o.nodePortRange, "node-port-range", "30000-32767", "the ports NodePort and LoadBalancer services get on every node")
	f.StringVar(&o.lbPool, "loadbalancer-pool", "", "addresses LoadBalancer services get, CIDRs or addresses, comma-separated (none: they stay pending)")
}

func newLogger(w interface{ Write([]byte) (int, error) }, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runController(ctx context.Context, o controllerOptions, stderr interface{ Write([]byte) (int, error) }) error {
	log, err := newLogger(stderr, o.logLevel)
	if err != nil {
		return err
	}
	if err := validateSource(o.src); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The store is long-lived and large next to the garbage a pass
		// makes; a lower GC target keeps RSS near the live heap (as
		// Prometheus does). GOGC in the environment overrides it.
		debug.SetGCPercent(defaultGOGC)
	}
	memoryLimit, err := parseMemoryLimit(o.memoryLimit)
	if err != nil {
		return err
	}
	var secret []byte
	if o.webhookSecretFile != "" {
		b, err := os.ReadFile(o.webhookSecretFile)
		if err != nil {
			return fmt.Errorf("--webhook-secret-file: %w", err)
		}
		secret = []byte(strings.TrimSpace(string(b)))
	} else if v := os.Getenv("KEELSON_WEBHOOK_SECRET"); v != "" {
		secret = []byte(v)
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	st, err := store.New()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svcNet, err := reconciler.ParseServiceNetwork(o.serviceCIDR, o.nodePortRange, o.lbPool)
	if err != nil {
		return err
	}
	applier := reconciler.NewApplier(st, manifest.NewLoader(manifest.Options{}), reconciler.NewMetrics(reg), log.With("component", "reconciler"), nil)
	applier.SetServiceNetwork(svcNet)
	if err := applier.SetSource(o.src.String(), refLabel(o.src), o.src.Path); err != nil {
		return err
	}

	repo, err := gitsync.Open(o.src, filepath.Join(o.dataDir, "git"), log.With("component", "gitsync"))
	if err != nil {
		return err
	}
	defer repo.Close()
	notes, err := gitsync.OpenNotes(o.src, filepath.Join(o.dataDir, "git-notes"), log.With("component", "notes"))
	if err != nil {
		return err
	}
	w := &gitsync.Watcher{
		Repo:     repo,
		Interval: o.interval,
		Log:      log.With("component", "gitsync"),
		OnRevision: func(_ context.Context, rev *gitsync.Revision) {
			rec, err := applier.Apply(rev, time.Now())
			if err != nil {
				log.Error("apply revision", "sha", rev.Commit.SHA, "err", err)
				return
			}
			if rec.FilesDecoded >= bigLoad {
				// Decoding thousands of files leaves a peak of garbage that the
				// runtime would keep mapped for a while; hand it back now.
				debug.FreeOSMemory()
			}
		},
		OnError: func(err error) {
			log.Warn("sync failed; the last good revision keeps running", "err", err)
			if err := applier.SourceError(err); err != nil {
				log.Error("record sync error", "err", err)
			}
		},
	}

	cluster, err := reconciler.NewCluster(st, reconciler.ClusterConfig{ClusterCIDR: o.clusterCIDR, AutoRollback: o.autoRollback, PodEvictionTimeout: o.evictionTimeout, NodeLeaseTimeout: o.leaseTimeout, Log: log.With("component", "cluster")})
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(o.dataDir, "agent-token")
	token, err := agentToken(tokenFile)
	if err != nil {
		return err
	}
	srv := apiserver.New(st, apiserver.Options{
		Webhook:    gitsync.WebhookHandler(secret, w.Trigger, log.With("component", "webhook")),
		Gatherer:   reg,
		Log:        log.With("component", "api"),
		Agents:     cluster,
		AgentToken: token,
		Logs:       nodeProxy(st, token),
		Exec:       nodeProxy(st, token),
		Usage:      nodesUsage(st, token),
		History:    gitHistory{gitsync.NewHistory(repo), notes},
	})
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		log.Warn("the API listens beyond this machine and has no user authentication: whoever reaches it reads the cluster and runs commands in pods (exec); put an authenticating proxy in front of it", "listen", ln.Addr().String())
	}
	hs := &http.Server{Handler: withPprof(srv, o.pprof), ReadHeaderTimeout: 10 * time.Second}
	if o.onListen != nil {
		o.onListen(ln.Addr().String())
	}
	releaseStartupPages(log)
	log.Info("keelson controller started", "api", "http://"+ln.Addr().String(), "repo", o.src.String(), "ref", refLabel(o.src), "path", o.src.Path, "agent-token", tokenFile, "write-notes", o.writeNotes)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if memoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		wg.Go(func() { followMemoryLimit(ctx, memoryLimit, 5*time.Second) })
	}
	holdQuiet := memoryLimit == 0 && os.Getenv("GOMEMLIMIT") == ""
	wg.Go(func() { releaseAfterBursts(ctx, time.Second, log, holdQuiet) })
	errc := make(chan error, 3)
	wg.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("API server: %w", err)
		}
		cancel()
	})
	wg.Go(func() {
		if err := cluster.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("cluster: %w", err)
		}
	})
	if o.writeNotes {
		wg.Go(func() { newNoteWriter(st, notes, log.With("component", "notes")).run(ctx) })
	}
	wg.Go(func() {
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("git sync: %w", err)
		}
		cancel()
	})
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	wg.Wait()
	log.Info("keelson controller stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// refLabel names what the source follows, for status and logs.
func refLabel(s gitsync.Source) string {
	switch {
	case s.Commit != "":
		return "commit " + s.Commit
	case s.Tag != "":
		return "tag " + s.Tag
	case s.Branch != "":
		return "branch " + s.Branch
	default:
		return "remote HEAD"
	}
}

// agentToken reads the token agents join with, creating it on first start.
func agentToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 32)
	if _, err := cryptorand.Read(buf); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	return tok, nil
}

// nodeProxy sends a pod's logs and exec requests on to the agent of its node.
func nodeProxy(st *store.Store, token string) func(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) {
	return func(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(api.Error{Error: msg})
		}
		if pod.Spec.NodeName == "" {
			fail(http.StatusBadRequest, fmt.Sprintf("pod %s/%s is not scheduled yet", pod.Namespace, pod.Name))
			return
		}
		nodes, err := st.Snapshot().Nodes(memdb.NewWatchSet())
		if err != nil {
			fail(http.StatusInternalServerError, err.Error())
			return
		}
		for _, n := range nodes {
			if n.Name != pod.Spec.NodeName {
				continue
			}
			u, err := url.Parse(n.API)
			if err != nil || n.API == "" {
				fail(http.StatusBadGateway, fmt.Sprintf("node %s has no API address", n.Name))
				return
			}
			// The node serves logs and exec to its controller only.
			r = r.Clone(r.Context())
			r.Header.Set(api.AgentTokenHeader, "Bearer "+token)
			httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
			return
		}
		fail(http.StatusBadGateway, fmt.Sprintf("node %s of pod %s/%s is not registered", pod.Spec.NodeName, pod.Namespace, pod.Name))
	}
}

// nodesUsage asks every node's agent for its usage, in parallel.
func nodesUsage(st *store.Store, token string) func(ctx context.Context) (*api.UsageList, error) {
	return func(ctx context.Context) (*api.UsageList, error) {
		nodes, err := st.Snapshot().Nodes(memdb.NewWatchSet())
		if err != nil {
			return nil, err
		}
		var (
			mu  sync.Mutex
			wg  sync.WaitGroup
			out api.UsageList
		)
		for _, n := range nodes {
			wg.Go(func() {
				c, err := client.New(n.API)
				if err != nil {
					return
				}
				c = c.WithToken(token)
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				u, err := c.Usage(ctx)
				if err != nil {
					return // a node that does not answer is left out
				}
				mu.Lock()
				out.Items = append(out.Items, u.Items...)
				mu.Unlock()
			})
		}
		wg.Wait()
		return &out, nil
	}
}

// parseMemoryLimit is --memory-limit in bytes, 0 for none.
func parseMemoryLimit(s string) (int64, error) {
	switch s {
	case "":
		return 0, nil
	case "auto":
		return cgroupMemoryLimit("/proc/self/cgroup", "/sys/fs/cgroup") / 10 * 9, nil
	}
	q, err := k8sresource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("--memory-limit %q: want a size such as 300Mi, auto, or 0 for none", s)
	}
	return q.Value(), nil
}

// cgroupMemoryLimit is the memory limit of the cgroup the process runs in,
// as /proc/self/cgroup (self) names it under root: cgroup v2's memory.max
// (also under root/unified on hybrid hosts), or v1's
// memory.limit_in_bytes. It is 0 when there is none or it cannot be read.
func cgroupMemoryLimit(self, root string) int64 {
	data, err := os.ReadFile(self)
	if err != nil {
		return 0
	}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			files = append(files, filepath.Join(root, parts[2], "memory.max"), filepath.Join(root, "unified", parts[2], "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			files = append(files, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "max", or v1's page-rounded MaxInt64, is no limit.
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && v < 1<<60 {
			return v
		}
	}
	return 0
}

// memoryLimitFor is the soft memory limit to give the runtime when the
// configured one is limit and the live heap (as the last collection found
// it) is live: the configured one, or a quarter above the live heap when
// that is more. Near the limit the runtime collects as often as it must to
// stay under it, so a limit at or below the live heap (a cluster bigger than
// it was set for) would have it collect all the time; following the heap
// keeps the cost of a collection bounded, as GOGC=25 would.
func memoryLimitFor(limit, live int64) int64 { return max(limit, live+live/4) }

// followMemoryLimit keeps the runtime's soft memory limit at memoryLimitFor
// the configured limit, looking at the live heap every period, until ctx
// ends.
func followMemoryLimit(ctx context.Context, limit int64, every time.Duration) {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := limit
	debug.SetMemoryLimit(set)
	eachTick(ctx, every, func() bool {
		metrics.Read(live)
		if live[0].Value.Kind() != metrics.KindUint64 {
			return true
		}
		if want := memoryLimitFor(limit, int64(live[0].Value.Uint64())); want != set {
			debug.SetMemoryLimit(want)
			set = want
		}
		return true
	})
}

// releaseAfterBursts hands the heap's free pages back to the system once a
// burst of work (a commit of many objects, thousands of agents reporting
// their pods, fifty pods starting) is over: it looks every period at how
// much the process allocated, and calls debug.FreeOSMemory when
// shouldRelease says so. The runtime would keep those pages mapped up to
// its GC goal, half the live heap above it, for as long as the process
// stays quiet: some 80 MB for a controller of 100,000 pods
// (BenchmarkControllerScale). It gives back the executable's resident code
// too (exepages): mapped again as the steady work runs, that is some 3 MB of
// the 25 the burst left.
//
// Unless GOGC is set in the environment, it also moves the GC target
// between defaultGOGC while busy and quietGOGC from a release until a
// period allocates as a burst does (busyPeriod). With holdQuiet (no memory
// limit is configured), it also gives the runtime a soft memory limit
// while quiet: quietHeadroom above what it held right after the release,
// so that the pages the steady work frees go back to the system as it
// runs rather than at the next release.
func releaseAfterBursts(ctx context.Context, every time.Duration, log *slog.Logger, holdQuiet bool) {
	ownGOGC := os.Getenv("GOGC") == ""
	quiet := false
	setQuiet := func(q bool, allocated uint64) {
		if ownGOGC && q != quiet {
			quiet = q
			if q {
				debug.SetGCPercent(quietGOGC)
			} else {
				debug.SetGCPercent(defaultGOGC)
				if holdQuiet {
					debug.SetMemoryLimit(math.MaxInt64)
				}
			}
			log.Debug("GC target", "quiet", q, "allocated-last-period", allocated)
		}
	}
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	var cycles uint64
	read := func() (allocs, live uint64, ok bool) {
		metrics.Read(samples)
		for _, s := range samples {
			if s.Value.Kind() != metrics.KindUint64 {
				return 0, 0, false
			}
		}
		cycles = samples[2].Value.Uint64()
		return samples[0].Value.Uint64(), samples[1].Value.Uint64(), true
	}
	last, _, ok := read()
	if !ok {
		return
	}
	var since, peak uint64 // allocated since the last release, and in its busiest period
	// What the last periods allocated, for busyPeriod: over a few seconds,
	// so that a moment's work (5,000 nodes renewing their leases together)
	// is not a burst.
	var recent, recentGCs [busyWindow]uint64
	n := 0
	lastCycles := cycles
	eachTick(ctx, every, func() bool {
		allocs, live, ok := read()
		if !ok {
			return false
		}
		delta := allocs - last
		last = allocs
		since += delta
		peak = max(peak, delta)
		recent[n%len(recent)] = delta
		recentGCs[n%len(recent)] = cycles - lastCycles
		lastCycles = cycles
		n++
		var window, gcs uint64
		for i := range recent {
			window += recent[i]
			gcs += recentGCs[i]
		}
		// Quiet, the memory limit makes the runtime collect as often as it
		// must to stay under it: more than a collection a second is a
		// burst too (a live heap that grew past it without one).
		if busyPeriod(window, live, every*time.Duration(len(recent))) || quiet && holdQuiet && gcs > busyWindow {
			setQuiet(false, window)
		}
		if shouldRelease(since, delta, peak, live) {
			start := time.Now()
			setQuiet(true, delta)
			debug.FreeOSMemory()
			if held := runtimeHeld(); holdQuiet && quiet && held > 0 {
				debug.SetMemoryLimit(int64(held + quietHeadroom(live)))
				log.Debug("quiet memory limit", "held", held, "limit", held+quietHeadroom(live))
			}
			// The code that did the burst (a revision applied, pods
			// started) is cold now too; what runs next maps its pages again.
			code, err := exepages.Release()
			if err != nil {
				log.Debug("release executable pages", "err", err)
			}
			since, peak = 0, 0
			// The burst is over: what follows is measured alone.
			recent, recentGCs = [busyWindow]uint64{}, [busyWindow]uint64{}
			log.Debug("returned free memory after a burst", "took", time.Since(start), "code-bytes", code)
		}
		return true
	})
}

// eachTick calls f every period until ctx ends or f returns false.
func eachTick(ctx context.Context, every time.Duration, f func() bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !f() {
			return
		}
	}
}

// releaseStartupPages drops the executable's pages that start-up mapped
// (package initialisers, flags, configuration): the code run from now on
// maps its own again (see exepages).
func releaseStartupPages(log *slog.Logger) {
	n, err := exepages.Release()
	if err != nil {
		log.Debug("release start-up pages", "err", err)
		return
	}
	log.Debug("released start-up pages", "bytes", n)
}

// shouldRelease says whether to return free memory now: the process
// allocated at least half its live heap since the last release (a GC
// cycle's worth of garbage, so there are pages to give back), and the
// burst is over: the last period brought at most a sixteenth of that, or a
// quarter of the busiest period since the last release (what follows is
// the steady trickle of leases, probes and reports, and the pages stay
// given back). A forced collection costs about what the runtime's own
// does, and this asks for at most one per GC cycle.
func shouldRelease(since, lastPeriod, peak, live uint64) bool {
	return live > 0 && since >= live/2 && (lastPeriod <= since/16 || lastPeriod <= peak/4)
}

// quietHeadroom is how far above what the runtime holds right after a
// release its memory may grow while quiet: a tenth of the live heap, and at
// least 4 MiB. (The heap's free slots take much of what the steady work
// allocates: at 100,000 pods, collections came every few seconds.)
func quietHeadroom(live uint64) uint64 { return max(live/10, 4<<20) }

// runtimeHeld is the memory the Go runtime holds from the system, as its
// memory limit counts it: all it mapped less what it released.
func runtimeHeld() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// busyWindow is how many of releaseAfterBursts' periods busyPeriod looks at.
const busyWindow = 5

// busyPeriod says whether a span of time of length d in which the process
// allocated allocated bytes, with a live heap of live, is part of a burst:
// at more than an eighth of the live heap a second, quietGOGC would collect
// more often than every 1.6 s, and so the burst goes back to defaultGOGC.
// Below a MiB a second nothing is busy: a small heap's collections are
// cheap whatever their number.
func busyPeriod(allocated, live uint64, d time.Duration) bool {
	perSecond := float64(allocated) / d.Seconds()
	return perSecond > float64(max(live/8, 1<<20))
}

// withPprof serves Go's profiles under /debug/pprof/ beside h when on is set
// (--pprof of the controller and the agent).
func withPprof(h http.Handler, on bool) http.Handler {
	if !on {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}
