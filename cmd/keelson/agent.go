package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	k8sresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keelson/keelson/apiserver"
	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/nodeagent"
	"github.com/keelson/keelson/nodeagent/network"
	"github.com/keelson/keelson/nodeagent/runtime"
	"github.com/keelson/keelson/store"
)

type agentOptions struct {
	// sharedProcess is set when the agent runs in the controller's
	// process (keelson up): the controller looks after the process's
	// memory (releaseAfterBursts), once.
	sharedProcess      bool
	name               string
	dataDir            string
	containerdSocket   string
	podCIDR            string
	podManifests       string
	listen             string
	pprof              bool
	insecureRegistries []string
	registryConfig     string
	logLevel           string
	server             string
	tokenFile          string
	leaseInterval      time.Duration
	simulate           int
	labels             map[string]string
	taints             []string
	clusterDomain      string
	externalIfaces     []string
	serviceLB          bool
	ingressHTTP        int
	ingressHTTPS       int
	ingressAccessLog   string
	// imageDirs are more directories of image archives to import at start,
	// beside DATA_DIR/images (keelson up: its own DATA_DIR/images).
	imageDirs []string
	// onListen, when set, is told the API's address once it listens (tests).
	onListen func(addr string)
	// onStart, when set, receives pod start latencies (benchmarks).
	onStart func(pod string, d time.Duration)
	// onServicesSynced, when set, is told each services index programmed (benchmarks).
	onServicesSynced func(index uint64)
}

func newAgentCmd() *cobra.Command {
	var o agentOptions
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "agent [--name N] [--data-dir D] [--containerd-socket S] [--pod-cidr CIDR] [--pod-manifests DIR]",
		Short: "Run the pods of this node as containers through containerd",
		Long: `The agent runs pods as real containers: one network namespace per pod wired
by CNI (bridge, host-local, portmap), one containerd container per pod
container, with restarts and back-off, logs, and status.

Without --containerd-socket it starts and supervises a private containerd
under the data directory. With --pod-manifests DIR every Pod manifest in DIR
runs (as kubelet's static pods): editing a file replaces its pod, removing
it stops the pod. Image archives (OCI or docker save) in DATA_DIR/images are
imported at start.

Killing the agent leaves its containers running; a new agent adopts them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", host, "node name")
	f.StringVar(&o.dataDir, "data-dir", filepath.Join(defaultDataDir(), "agent"), "where the agent keeps containerd, pod files, logs and network state")
	f.StringVar(&o.containerdSocket, "containerd-socket", "", "use this containerd instead of starting a private one")
	f.StringVar(&o.podCIDR, "pod-cidr", "10.88.0.0/24", "the node's pod addresses")
	f.StringVar(&o.podManifests, "pod-manifests", "", "directory of Pod manifests to run (static pods)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7677", "address of the agent's API")
	f.StringSliceVar(&o.insecureRegistries, "insecure-registry", nil, "registry host[:port] reached over plain HTTP (127.0.0.1 and localhost always are)")
	f.StringVar(&o.registryConfig, "registry-config", "", "docker config.json with registry credentials")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.server, "server", "", "the controller to join (instead of --pod-manifests)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the token the controller wrote (DATA_DIR/agent-token)")
	f.StringToStringVar(&o.labels, "node-labels", nil, "labels of this node, key=value,...")
	f.StringSliceVar(&o.taints, "register-with-taints", nil, "taints of this node, key=value:Effect,... (Effect: NoSchedule, PreferNoSchedule or NoExecute), as kubelet's flag")
	f.DurationVar(&o.leaseInterval, "lease-interval", nodeagent.LeaseInterval, "how often to renew the node's lease with the controller")
	f.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "the DNS domain of Services and pods")
	f.StringSliceVar(&o.externalIfaces, "external-interface", nil, "interfaces where NodePort and LoadBalancer traffic arrives (default: the one holding the node's address)")
	f.IntVar(&o.ingressHTTP, "ingress-http-port", 80, "port the node serves the cluster's Ingresses on over HTTP (0: no Ingress)")
	f.IntVar(&o.ingressHTTPS, "ingress-https-port", 443, "port the node serves the cluster's Ingresses on over HTTPS")
	f.StringVar(&o.ingressAccessLog, "ingress-access-log", "", "write a line per Ingress request, in the combined log format, to this file (- for standard output)")
	f.BoolVar(&o.serviceLB, "service-lb", true, "load-balance Services in the kernel with eBPF and serve cluster DNS (with --server)")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go's profiles under /debug/pprof/ on the agent's API address")
	f.IntVar(&o.simulate, "simulate", 0, "register N simulated nodes named NAME-00000... whose pods a fake runtime reports running (for scale tests); needs --server")
	return cmd
}

func runAgent(ctx context.Context, o agentOptions, stderr io.Writer) error {
	log, err := newLogger(stderr, o.logLevel)
	if err != nil {
		return err
	}
	if (o.podManifests == "") == (o.server == "") {
		return errors.New("give either --server (join a controller) or --pod-manifests (run static pods)")
	}
	if o.simulate > 0 && o.server == "" {
		return errors.New("--simulate needs --server")
	}
	if os.Getenv("GOGC") == "" {
		// The agent's live heap is small and changes little once its pods
		// run; a lower GC target keeps its RSS near it (see defaultGOGC).
		debug.SetGCPercent(defaultGOGC)
	}
	var (
		ctl   *client.Client
		token string
	)
	if o.server != "" {
		if o.tokenFile == "" {
			return errors.New("--token-file is required with --server")
		}
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		c, err := client.New(o.server)
		if err != nil {
			return fmt.Errorf("--server: %w", err)
		}
		token = strings.TrimSpace(string(b))
		ctl = c.WithToken(token)
	}
	if o.simulate > 0 {
		return simulate(ctx, ctl, o.name, o.simulate, o.leaseInterval, log.With("component", "simulate"))
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	var creds runtime.Credentials
	if o.registryConfig != "" {
		b, err := os.ReadFile(o.registryConfig)
		if err != nil {
			return fmt.Errorf("--registry-config: %w", err)
		}
		if creds, err = runtime.ParseDockerConfig(b); err != nil {
			return fmt.Errorf("--registry-config %s: %w", o.registryConfig, err)
		}
	}

	socket := o.containerdSocket
	if socket == "" {
		d, err := runtime.StartDaemon(ctx, filepath.Join(o.dataDir, "containerd"), log)
		if err != nil {
			return err
		}
		// Stopping containerd leaves the containers running (their shims
		// stay); the next agent's containerd reconnects to them.
		defer d.Stop()
		socket = d.Socket()
	}
	rt, err := runtime.Connect(ctx, socket, "keelson", log, runtime.WithInsecureRegistries(o.insecureRegistries...))
	if err != nil {
		return err
	}
	defer rt.Close()
	for _, imagesDir := range append([]string{filepath.Join(o.dataDir, "images")}, o.imageDirs...) {
		if refs, err := rt.ImportDir(ctx, imagesDir); err != nil {
			log.Warn("import image archives", "dir", imagesDir, "err", err)
		} else if len(refs) > 0 {
			log.Info("imported image archives", "dir", imagesDir, "images", refs)
		}
	}
	hostIP := nodeIP()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var reg *api.NodeRegistration
	if ctl != nil {
		node := nodeObject(o.name, hostIP, o.labels)
		if node.Spec.Taints, err = parseTaints(o.taints); err != nil {
			return err
		}
		reg = &api.NodeRegistration{Node: node, API: "http://" + ln.Addr().String()}
		n, err := nodeagent.Join(ctx, ctl, reg, log.With("component", "join"))
		if err != nil {
			ln.Close()
			return err
		}
		o.podCIDR = n.Spec.PodCIDR
		log.Info("joined the controller", "server", o.server, "pod-cidr", o.podCIDR)
	}
	netm, err := network.New(network.Config{Node: o.name, DataDir: filepath.Join(o.dataDir, "network"), PodCIDR: o.podCIDR}, log.With("component", "network"))
	if err != nil {
		return err
	}
	defer netm.Close()
	st, err := store.New()
	if err != nil {
		return err
	}
	var svc *serviceParts
	if ctl != nil && o.serviceLB {
		if svc, err = startServiceParts(ctx, o, hostIP, log); err != nil {
			return err
		}
		defer svc.Close()
	}
	agent, err := nodeagent.New(nodeagent.Config{
		Node: o.name, DataDir: o.dataDir, HostIP: hostIP,
		Runtime: rt, Network: netm, Store: st, Credentials: creds,
		DNS: svc.podDNS(o.clusterDomain), Log: log.With("component", "agent"), OnStart: o.onStart,
	})
	if err != nil {
		return err
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := apiserver.New(st, apiserver.Options{Gatherer: metrics, Log: log.With("component", "api"), Logs: agentLogs(agent), Exec: agentExec(agent), ControllerToken: token,
		Usage: func(ctx context.Context) (*api.UsageList, error) {
			u, err := agent.Usage(ctx, 500*time.Millisecond)
			if err != nil {
				return nil, err
			}
			return &api.UsageList{Items: []api.Usage{*u}}, nil
		}})
	hs := &http.Server{Handler: withPprof(srv, o.pprof), ReadHeaderTimeout: 10 * time.Second}
	if o.onListen != nil {
		o.onListen(ln.Addr().String())
	}
	releaseStartupPages(log)
	log.Info("keelson agent started", "node", o.name, "api", "http://"+ln.Addr().String(), "containerd", socket, "pod-cidr", o.podCIDR, "pod-manifests", o.podManifests, "server", o.server)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server", "err", err)
		}
		cancel()
	})
	if !o.sharedProcess {
		wg.Go(func() { releaseAfterBursts(ctx, time.Second, log, os.Getenv("GOMEMLIMIT") == "") })
	}
	var source nodeagent.PodSource
	if ctl != nil {
		source = &nodeagent.APISource{Client: ctl, Node: o.name, Log: log.With("component", "controller"),
			Resync: func(ctx context.Context) error {
				if _, err := ctl.Register(ctx, reg); err != nil {
					return err
				}
				return nodeagent.ReportAll(ctx, st, ctl, o.name)
			}}
		wg.Go(func() { nodeagent.KeepLease(ctx, ctl, reg, o.leaseInterval, log.With("component", "lease")) })
		wg.Go(func() { nodeagent.ReportStatus(ctx, st, ctl, o.name, log.With("component", "report")) })
		routes := &nodeagent.Routes{Client: ctl, Node: o.name, Log: log.With("component", "routes")}
		lbHolder := &nodeagent.LBHolder{Node: o.name, Sync: nodeagent.SyncLBAddresses}
		routes.OnNodes = lbHolder.SetNodes
		wg.Go(func() { routes.Run(ctx) })
		if svc != nil {
			synced := func(idx uint64) {
				// The controller waits for every node's word before it stops
				// a pod that left a service (no new connection reaches it).
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				if err := ctl.ServicesSynced(rctx, o.name, idx); err != nil && ctx.Err() == nil {
					log.Debug("report services index", "index", idx, "err", err)
				}
				rcancel()
				if o.onServicesSynced != nil {
					o.onServicesSynced(idx)
				}
			}
			services := &nodeagent.Services{Client: ctl, Node: o.name, NodeAddrs: svc.nodeAddrs, LB: svc.lb, DNS: svc.dns,
				Addresses: lbHolder.SetAddrs, OnSynced: synced, Log: log.With("component", "services")}
			if ing := startIngress(ctx, &wg, o, svc.nodeAddrs, metrics, log.With("component", "ingress")); ing != nil {
				routes := &nodeagent.IngressRoutes{Client: ctl, Node: o.name, Proxy: ing.proxy, Log: log.With("component", "ingress")}
				services.OnServices = routes.SetServices
				services.Addresses = func(lb []netip.Addr) error {
					ing.setLBAddrs(lb)
					return lbHolder.SetAddrs(lb)
				}
				wg.Go(func() { routes.Run(ctx) })
			}
			wg.Go(func() { services.Run(ctx) })
		}
	} else {
		source = &nodeagent.DirSource{Dir: o.podManifests, Log: log.With("component", "pod-manifests")}
	}
	runErr := agent.Run(ctx, source)
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	wg.Wait()
	log.Info("keelson agent stopped; its containers keep running")
	return runErr
}

// agentLogs serves container logs from the agent's files.
func agentLogs(a *nodeagent.Agent) apiserver.LogsFunc {
	return func(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) {
		q := r.URL.Query()
		o := nodeagent.LogOptions{Container: q.Get("container"), Previous: q.Get("previous") == "true", Follow: q.Get("follow") == "true", Tail: -1}
		if v := q.Get("tail"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				_ = json.NewEncoder(w).Encode(api.Error{Error: "query parameter tail: " + strconv.Quote(v) + " is not a number"})
				return
			}
			o.Tail = n
		}
		// Check that there is a log before answering 200, so errors are errors.
		if err := a.Logs(r.Context(), pod, nodeagent.LogOptions{Container: o.Container, Previous: o.Previous, Tail: 0}, io.Discard); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, nodeagent.ErrNoLogs) {
				code = http.StatusNotFound
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(api.Error{Error: err.Error()})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = a.Logs(r.Context(), pod, o, flushWriter{w})
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushWriter) Flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}

// nodeIP is the node's address: the first IPv4 address of an interface
// that is up and not a loopback, a bridge or a veth of pods.
func nodeIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 ||
			strings.HasPrefix(ifc.Name, "veth") || strings.HasPrefix(ifc.Name, "kb-") || strings.HasPrefix(ifc.Name, "cni") {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// nodeObject describes this machine for registration: capacity from the
// kernel, its address and labels.
func nodeObject(name, ip string, labels map[string]string) corev1.Node {
	cpu := k8sresource.NewQuantity(int64(goruntime.NumCPU()), k8sresource.DecimalSI)
	mem := k8sresource.NewQuantity(nodeagent.MemoryTotal(), k8sresource.BinarySI)
	pods := k8sresource.NewQuantity(110, k8sresource.DecimalSI)
	l := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": goruntime.GOARCH}
	for k, v := range labels {
		l[k] = v
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *mem, corev1.ResourcePods: *pods}
	return corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Status: corev1.NodeStatus{
			Capacity: capacity, Allocatable: capacity.DeepCopy(),
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
			NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "keelson", ContainerRuntimeVersion: "containerd", OperatingSystem: "linux", Architecture: goruntime.GOARCH},
		},
	}
}

// parseTaints reads kubelet's --register-with-taints form: key=value:Effect
// or key:Effect.
func parseTaints(specs []string) ([]corev1.Taint, error) {
	var out []corev1.Taint
	for _, spec := range specs {
		kv, effect, ok := strings.Cut(spec, ":")
		key, value, _ := strings.Cut(kv, "=")
		t := corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)}
		switch {
		case !ok || key == "":
			return nil, fmt.Errorf("--register-with-taints %q: want key=value:Effect or key:Effect", spec)
		case t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectPreferNoSchedule && t.Effect != corev1.TaintEffectNoExecute:
			return nil, fmt.Errorf("--register-with-taints %q: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", spec, effect)
		}
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return nil, fmt.Errorf("--register-with-taints %q: key: %s", spec, strings.Join(errs, "; "))
		}
		if value != "" {
			if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
				return nil, fmt.Errorf("--register-with-taints %q: value: %s", spec, strings.Join(errs, "; "))
			}
		}
		out = append(out, t)
	}
	return out, nil
}
