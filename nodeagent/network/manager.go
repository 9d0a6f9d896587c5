package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniutils "github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/cni/pkg/version"
)

var (
	// ErrIPExhausted is wrapped by Setup errors when the node's pod CIDR has no free address.
	ErrIPExhausted = errors.New("pod CIDR exhausted")
	// ErrPortInUse is wrapped by Setup errors when a hostPort is taken on the node.
	ErrPortInUse = errors.New("host port in use")
	// ErrInvalidPod is wrapped by errors about a PodRef or its port mappings.
	ErrInvalidPod = errors.New("invalid pod network request")
)

// PodRef names the pod a sandbox belongs to. UID keys the sandbox: it names the
// network namespace file and is the CNI container ID, so it must match
// [a-zA-Z0-9][a-zA-Z0-9_.-]* (Kubernetes UIDs do).
type PodRef struct {
	UID, Namespace, Name string
}

func (p PodRef) String() string {
	if p.Namespace == "" && p.Name == "" {
		return p.UID
	}
	return p.Namespace + "/" + p.Name + " (" + p.UID + ")"
}

// Sandbox is the network of one pod: its network namespace, which all the pod's
// containers join, and its address on the pod network.
type Sandbox struct {
	// NetNSPath is the bind-mounted network namespace; pass it to the runtime as
	// the containers' network namespace path.
	NetNSPath string
	IP        net.IP
	Gateway   net.IP
	// Interface is the pod's interface inside the namespace (eth0).
	Interface string
}

// SandboxInfo describes a pod sandbox found on the node: a network namespace
// file under the run directory, a CNI result in the cache, or both.
type SandboxInfo struct {
	// Pod has the UID; Namespace and Name are filled from the cached CNI
	// arguments when there is a cached result.
	Pod       PodRef
	NetNSPath string
	// NetNS is true when NetNSPath is a mounted network namespace.
	NetNS bool
	// IP is the pod address from the CNI cache; nil when there is no cached result.
	IP net.IP
}

// Manager wires pod network namespaces to the node's pod network with CNI.
//
// It is safe for concurrent use; calls for the same pod UID are serialized.
// It runs no goroutines past a call (Setup and Teardown run the loopback
// plugin in a goroutine they wait for). It holds a listening socket for every hostPort of
// its pods, so that no other process on the node takes them; Close releases them.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
	bridge   *libcni.NetworkConfigList // without portmap: ADD of pods without host ports (and so their DEL), and checkSandbox
	lo       *libcni.PluginConfig
	iptables string // empty when not installed (then masq chains are left to the plugin)

	mu       sync.Mutex
	podLocks map[string]*podLock
	ports    map[string][]reservation // pod UID → held host ports

	masqMu   sync.Mutex
	masqDone bool // the node's masquerade chain is written (see ensureMasquerade)
}

type podLock struct {
	mu   sync.Mutex
	refs int
}

type reservation struct {
	key portKey
	c   io.Closer
}

// New validates cfg, creates the network's directories and CNI configuration,
// and re-reserves the host ports of pods wired before a restart.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{cfg.cacheDir(), cfg.ipamDir(), cfg.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create network directory: %w", err)
		}
	}
	list, err := cfg.parsedConfList(true)
	if err != nil {
		return nil, err
	}
	bridgeOnly, err := cfg.parsedConfList(false)
	if err != nil {
		return nil, err
	}
	// Written for people and tools such as cnitool; the Manager uses the copy in memory.
	if err := writeFileAtomic(filepath.Join(cfg.stateDir(), cfg.NetworkName+".conflist"), list.Bytes, 0o644); err != nil {
		return nil, fmt.Errorf("write CNI configuration: %w", err)
	}
	loBytes, err := cfg.loopbackConf()
	if err != nil {
		return nil, fmt.Errorf("build loopback configuration: %w", err)
	}
	// The loopback plugin runs as a network of its own, beside the bridge
	// chain; libcni still takes such single-plugin configurations.
	//lint:ignore SA1019 a single-plugin network is what loopback is
	lo, err := libcni.ConfFromBytes(loBytes)
	if err != nil {
		return nil, fmt.Errorf("parse loopback configuration: %w", err)
	}
	iptables, _ := exec.LookPath("iptables")
	m := &Manager{
		cfg: cfg,
		log: log,
		// An explicit exec: libcni's lazy default is set without a lock, a data race
		// under concurrent calls. Plugin stderr goes to the log.
		cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, cfg.cacheDir(), newBoundedExec(&invoke.DefaultExec{
			RawExec:       &invoke.RawExec{Stderr: stderrLog{log}},
			PluginDecoder: version.PluginDecoder{},
		}, pluginRuns())),
		list:     list,
		bridge:   bridgeOnly,
		lo:       lo,
		iptables: iptables,
		podLocks: map[string]*podLock{},
		ports:    map[string][]reservation{},
	}
	m.reserveCachedPorts()
	return m, nil
}

// Config returns the configuration with defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// ConfList returns the CNI configuration list of the pod network.
func (m *Manager) ConfList() []byte { return slices.Clone(m.list.Bytes) }

// Close releases the host ports held for pods. The pods' networks stay as they
// are; a new Manager on the same DataDir takes them over.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for uid, rs := range m.ports {
		for _, r := range rs {
			_ = r.c.Close()
		}
		delete(m.ports, uid)
	}
	return nil
}

// NetNSPath is where the network namespace of the pod with this UID is mounted.
func (m *Manager) NetNSPath(uid string) string { return filepath.Join(m.cfg.RunDir, uid) }

// Setup creates the pod's network namespace and wires it to the pod network,
// with the given host ports. If the pod's sandbox already exists and passes a
// CNI CHECK, Setup returns it unchanged (same IP, no second ADD); a broken one
// is torn down and created again, keeping its IP when it is still free. On
// failure Setup undoes what it did.
func (m *Manager) Setup(ctx context.Context, pod PodRef, ports []PortMapping) (*Sandbox, error) {
	if err := validatePod(pod); err != nil {
		return nil, err
	}
	ports, err := normalizePorts(ports)
	if err != nil {
		return nil, fmt.Errorf("set up network of pod %s: %w: %w", pod, ErrInvalidPod, err)
	}
	unlock := m.lockPod(pod.UID)
	defer unlock()

	path := m.NetNSPath(pod.UID)
	rt := m.runtimeConf(pod, path, ports)

	var hint net.IP
	cached, err := m.cni.GetNetworkListCachedResult(m.list, rt)
	if err != nil {
		m.log.Warn("unreadable cached CNI result; recreating sandbox", "pod", pod.String(), "err", err)
		cached = nil
	}
	hasNS := isNetNS(path)
	if cached != nil {
		if sb, err := sandboxFromResult(cached, path); err == nil {
			hint = sb.IP
			if hasNS {
				checkRT := rt
				if _, crt, err := m.cni.GetNetworkListCachedConfig(m.list, rt); err == nil && crt != nil {
					checkRT = crt
					checkRT.NetNS = path
				}
				err := m.checkSandbox(ctx, checkRT)
				if err == nil {
					m.ensurePortsHeld(pod.UID, cachedPorts(checkRT))
					return sb, nil
				}
				m.log.Warn("pod sandbox failed CNI CHECK; recreating it", "pod", pod.String(), "ip", sb.IP, "err", err)
			}
		}
	}
	if hasNS || cached != nil || fileExists(path) {
		// A partial or broken sandbox: clear it before starting again.
		if err := m.teardownLocked(ctx, pod.UID); err != nil {
			return nil, fmt.Errorf("set up network of pod %s: clear previous sandbox: %w", pod, err)
		}
	}

	if err := m.ensureMasquerade(ctx); err != nil {
		return nil, fmt.Errorf("set up network of pod %s: %w", pod, err)
	}
	held, err := m.reservePorts(pod, ports)
	if err != nil {
		return nil, fmt.Errorf("set up network of pod %s: %w", pod, err)
	}
	sb, err := m.create(ctx, pod, rt, hint)
	if err != nil {
		m.releasePorts(pod.UID)
		return nil, fmt.Errorf("set up network of pod %s: %w", pod, err)
	}
	m.log.Debug("pod network set up", "pod", pod.String(), "ip", sb.IP, "netns", sb.NetNSPath, "hostPorts", len(held))
	return sb, nil
}

// create makes the namespace and runs CNI ADD; on failure it removes both again.
func (m *Manager) create(ctx context.Context, pod PodRef, rt *libcni.RuntimeConf, hint net.IP) (*Sandbox, error) {
	if err := createNetNS(rt.NetNS); err != nil {
		return nil, fmt.Errorf("create network namespace: %w", err)
	}
	// lo is up already (createNetNS). Without host ports the portmap plugin
	// has nothing to do, so it is not started.
	list := m.list
	if len(rt.CapabilityArgs) == 0 {
		list = m.bridge
	}
	undo := func() {
		cctx := context.WithoutCancel(ctx)
		if err := m.cni.DelNetworkList(cctx, list, rt); err != nil {
			m.log.Warn("undo CNI ADD", "pod", pod.String(), "err", err)
		}
		if err := removeNetNS(rt.NetNS); err != nil {
			m.log.Warn("undo network namespace", "pod", pod.String(), "err", err)
		}
	}
	var (
		res types.Result
		err error
	)
	if hint != nil {
		hrt := *rt
		hrt.Args = append(slices.Clone(rt.Args), [2]string{"IP", hint.String()})
		res, err = m.cni.AddNetworkList(ctx, list, &hrt)
		if err != nil {
			m.log.Info("previous pod IP not available; allocating a new one", "pod", pod.String(), "ip", hint, "err", err)
			if derr := m.cni.DelNetworkList(context.WithoutCancel(ctx), list, &hrt); derr != nil {
				m.log.Warn("undo CNI ADD", "pod", pod.String(), "err", derr)
			}
		}
	}
	if res == nil {
		res, err = m.cni.AddNetworkList(ctx, list, rt)
	}
	if err != nil {
		undo()
		return nil, m.classifyAddError(err)
	}
	sb, err := sandboxFromResult(res, rt.NetNS)
	if err != nil {
		undo()
		return nil, err
	}
	return sb, nil
}

// checkSandbox runs CNI CHECK on a wired pod. The portmap plugin of
// containernetworking-plugins 1.1 fails CHECK on IPv4-only pods whenever
// ip6tables works (it looks for an IPv6 DNAT chain that ADD never made), so
// portmap is left out of the CHECK and its per-pod DNAT chain is checked here.
func (m *Manager) checkSandbox(ctx context.Context, rt *libcni.RuntimeConf) error {
	if err := m.cni.CheckNetworkList(ctx, m.bridge, rt); err != nil {
		return err
	}
	if len(cachedPorts(rt)) == 0 || m.iptables == "" {
		return nil
	}
	chain := portmapDNATChain(m.list.Name, rt.ContainerID)
	if out, err := exec.CommandContext(ctx, m.iptables, "-w", "-t", "nat", "-n", "-L", chain).CombinedOutput(); err != nil {
		return fmt.Errorf("portmap chain %s: %w: %s", chain, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (m *Manager) classifyAddError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no IP addresses available"):
		return fmt.Errorf("%w: pod CIDR %s is full, every address is allocated: %w", ErrIPExhausted, m.cfg.PodCIDR, err)
	default:
		return fmt.Errorf("CNI ADD on network %s: %w", m.list.Name, err)
	}
}

// Teardown removes the pod's network: CNI DEL (with the configuration and
// arguments cached at ADD, so it works when the namespace is already gone),
// then the namespace file, then the host port reservations. Tearing down a pod
// that has no sandbox is not an error. If DEL fails, the namespace is kept so
// that a retry can finish the job.
func (m *Manager) Teardown(ctx context.Context, pod PodRef) error {
	if err := validatePod(pod); err != nil {
		return err
	}
	unlock := m.lockPod(pod.UID)
	defer unlock()
	if err := m.teardownLocked(ctx, pod.UID); err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", pod, err)
	}
	return nil
}

func (m *Manager) teardownLocked(ctx context.Context, uid string) error {
	path := m.NetNSPath(uid)
	hasNS := isNetNS(path)
	rt := &libcni.RuntimeConf{ContainerID: uid, IfName: podInterface}
	if hasNS {
		rt.NetNS = path
	}
	list := m.list
	cachedConf, cachedRT, err := m.cni.GetNetworkListCachedConfig(m.list, rt)
	if err != nil {
		m.log.Warn("unreadable cached CNI configuration; deleting with the current one", "uid", uid, "err", err)
	} else if cachedConf != nil {
		if l, err := libcni.ConfListFromBytes(cachedConf); err == nil {
			list = l
		}
		rt = cachedRT
	}
	if !hasNS && cachedConf == nil && err == nil && !fileExists(path) {
		// Nothing was ever wired (or it is all gone): no plugin to run.
		m.releasePorts(uid)
		return nil
	}
	cached, _ := m.cni.GetNetworkListCachedResult(list, rt)

	if err := m.delWithRetry(ctx, list, rt); err != nil {
		return fmt.Errorf("CNI DEL: %w", err)
	}
	// Sandboxes wired by an agent that still ran the loopback plugin have its
	// result cached; DEL clears it. (lo itself goes with the namespace.)
	if lo, _ := m.cni.GetNetworkCachedResult(m.lo, m.loRuntimeConf(rt)); lo != nil {
		if err := m.cni.DelNetwork(ctx, m.lo, m.loRuntimeConf(rt)); err != nil {
			return fmt.Errorf("CNI DEL of loopback: %w", err)
		}
	}
	if !hasNS && cached != nil && m.iptables != "" && bridgeMasquerades(list) {
		if err := removeMasqChain(ctx, m.iptables, bridgeMasqChain(list.Name, uid)); err != nil {
			return fmt.Errorf("remove masquerade rules: %w", err)
		}
	}
	if err := removeNetNS(path); err != nil {
		return err
	}
	m.releasePorts(uid)
	return nil
}

// delWithRetry runs CNI DEL, again after a pause when it fails: iptables
// with the nf_tables backend refuses to delete a chain (EBUSY) while another
// process changes the ruleset at the same moment, and DEL is idempotent.
func (m *Manager) delWithRetry(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	delay := 50 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		if err = m.cni.DelNetworkList(ctx, list, rt); err == nil || attempt == 5 || ctx.Err() != nil {
			return err
		}
		m.log.Debug("CNI DEL failed; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// Sandboxes lists the pod sandboxes on the node: every network namespace file
// under the run directory and every pod with a cached CNI result on this
// network (a namespace lost in a reboot leaves only the latter). The agent
// adopts those of pods it still runs and tears down the others.
func (m *Manager) Sandboxes() ([]SandboxInfo, error) {
	byUID := map[string]*SandboxInfo{}
	entries, err := os.ReadDir(m.cfg.RunDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, e := range entries {
		if cniutils.ValidateContainerID(e.Name()) != nil {
			continue
		}
		path := filepath.Join(m.cfg.RunDir, e.Name())
		byUID[e.Name()] = &SandboxInfo{Pod: PodRef{UID: e.Name()}, NetNSPath: path, NetNS: isNetNS(path)}
	}
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("list cached CNI results: %w", err)
	}
	for _, a := range atts {
		if a.Network != m.list.Name || a.IfName != podInterface {
			continue
		}
		info := byUID[a.ContainerID]
		if info == nil {
			path := m.NetNSPath(a.ContainerID)
			info = &SandboxInfo{Pod: PodRef{UID: a.ContainerID}, NetNSPath: path, NetNS: isNetNS(path)}
			byUID[a.ContainerID] = info
		}
		for _, kv := range a.CniArgs {
			switch kv[0] {
			case "K8S_POD_NAMESPACE":
				info.Pod.Namespace = kv[1]
			case "K8S_POD_NAME":
				info.Pod.Name = kv[1]
			}
		}
		rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, IfName: a.IfName}
		if res, err := m.cni.GetNetworkListCachedResult(m.list, rt); err == nil && res != nil {
			if sb, err := sandboxFromResult(res, info.NetNSPath); err == nil {
				info.IP = sb.IP
			}
		}
	}
	out := make([]SandboxInfo, 0, len(byUID))
	for _, info := range byUID {
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b SandboxInfo) int { return strings.Compare(a.Pod.UID, b.Pod.UID) })
	return out, nil
}

// runtimeConf is the CNI runtime configuration of a pod.
func (m *Manager) runtimeConf(pod PodRef, path string, ports []PortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: pod.UID,
		NetNS:       path,
		IfName:      podInterface,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.UID},
			{"K8S_POD_UID", pod.UID},
		},
	}
	if len(ports) > 0 {
		entries := make([]portMapEntry, 0, len(ports))
		for _, p := range ports {
			entries = append(entries, portMapEntry{HostPort: int(p.HostPort), ContainerPort: int(p.ContainerPort), Protocol: p.Protocol, HostIP: p.HostIP})
		}
		rt.CapabilityArgs = map[string]any{"portMappings": entries}
	}
	return rt
}

func (m *Manager) loRuntimeConf(rt *libcni.RuntimeConf) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: rt.ContainerID, NetNS: rt.NetNS, IfName: "lo"}
}

// portMapEntry is the portmap plugin's runtimeConfig.portMappings entry.
type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// cachedPorts decodes the port mappings of a cached runtime configuration.
func cachedPorts(rt *libcni.RuntimeConf) []PortMapping {
	raw, ok := rt.CapabilityArgs["portMappings"]
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil
	}
	var entries []portMapEntry
	if json.Unmarshal(b, &entries) != nil {
		return nil
	}
	out := make([]PortMapping, 0, len(entries))
	for _, e := range entries {
		out = append(out, PortMapping{HostPort: int32(e.HostPort), ContainerPort: int32(e.ContainerPort), Protocol: e.Protocol, HostIP: e.HostIP})
	}
	out, _ = normalizePorts(out)
	return out
}

// reservePorts checks that no other pod of this Manager and no process on the
// node has the pod's host ports, and holds them.
func (m *Manager) reservePorts(pod PodRef, ports []PortMapping) ([]reservation, error) {
	if len(ports) == 0 {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var held []reservation
	fail := func(err error) ([]reservation, error) {
		for _, r := range held {
			_ = r.c.Close()
		}
		return nil, err
	}
	for _, p := range ports {
		k := keyOf(p)
		for uid, rs := range m.ports {
			if uid == pod.UID {
				continue
			}
			for _, r := range rs {
				if r.key.conflicts(k) {
					return fail(fmt.Errorf("%w: host port %s is already used by pod %s", ErrPortInUse, k, uid))
				}
			}
		}
		for _, r := range held {
			if r.key.conflicts(k) {
				return fail(fmt.Errorf("%w: host port %s is mapped twice", ErrInvalidPod, k))
			}
		}
		c, err := holdPort(k)
		if err != nil {
			return fail(err)
		}
		held = append(held, reservation{key: k, c: c})
	}
	closeAll(closersOf(m.ports[pod.UID]))
	m.ports[pod.UID] = held
	return held, nil
}

// ensurePortsHeld re-reserves the ports of an adopted pod, best effort.
func (m *Manager) ensurePortsHeld(uid string, ports []PortMapping) {
	m.mu.Lock()
	_, ok := m.ports[uid]
	m.mu.Unlock()
	if ok || len(ports) == 0 {
		return
	}
	if _, err := m.reservePorts(PodRef{UID: uid}, ports); err != nil {
		m.log.Warn("cannot reserve host ports of existing pod", "uid", uid, "err", err)
	}
}

// reserveCachedPorts holds the host ports of the pods in the CNI cache.
func (m *Manager) reserveCachedPorts() {
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		m.log.Warn("cannot read CNI cache to reserve host ports", "err", err)
		return
	}
	for _, a := range atts {
		if a.Network != m.list.Name || a.IfName != podInterface {
			continue
		}
		m.ensurePortsHeld(a.ContainerID, cachedPorts(&libcni.RuntimeConf{CapabilityArgs: a.CapabilityArgs}))
	}
}

func (m *Manager) releasePorts(uid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	closeAll(closersOf(m.ports[uid]))
	delete(m.ports, uid)
}

func closersOf(rs []reservation) []io.Closer {
	cs := make([]io.Closer, 0, len(rs))
	for _, r := range rs {
		cs = append(cs, r.c)
	}
	return cs
}

// lockPod serializes the calls for one pod UID.
func (m *Manager) lockPod(uid string) (unlock func()) {
	m.mu.Lock()
	l := m.podLocks[uid]
	if l == nil {
		l = &podLock{}
		m.podLocks[uid] = l
	}
	l.refs++
	m.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(m.podLocks, uid)
		}
		m.mu.Unlock()
	}
}

func validatePod(pod PodRef) error {
	if err := cniutils.ValidateContainerID(pod.UID); err != nil {
		return fmt.Errorf("pod %s: %w: UID %q must match [a-zA-Z0-9][a-zA-Z0-9_.-]*", pod, ErrInvalidPod, pod.UID)
	}
	return nil
}

// sandboxFromResult finds the pod's address in a CNI result: the first IP on
// an interface inside a sandbox.
func sandboxFromResult(res types.Result, path string) (*Sandbox, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result: %w", err)
	}
	for _, ipc := range r.IPs {
		if ipc.Interface == nil || *ipc.Interface < 0 || *ipc.Interface >= len(r.Interfaces) {
			continue
		}
		iface := r.Interfaces[*ipc.Interface]
		if iface.Sandbox == "" {
			continue
		}
		return &Sandbox{NetNSPath: path, IP: ipc.Address.IP, Gateway: ipc.Gateway, Interface: iface.Name}, nil
	}
	return nil, errors.New("CNI result has no address inside the pod")
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// stderrLog logs what CNI plugins write to stderr.
type stderrLog struct{ log *slog.Logger }

func (w stderrLog) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(string(p)); msg != "" {
		w.log.Warn("CNI plugin stderr", "output", msg)
	}
	return len(p), nil
}

// pluginRuns is how many CNI plugins the Manager runs at once: eight per
// CPU. A plugin is a process to start and wait for, and Go gives each
// waiting goroutine a thread of its own, which it then keeps for good (48 KB
// of stacks each): without a bound, a burst of pods leaves a thread per pod
// behind (fifty for fifty pods). A plugin's run is not all CPU work, so
// the bound must not be low: BenchmarkAgent50Pods took 8.8 s with 16 at once
// on two CPUs and without a bound, 9.2 s with 8 (and 2 MB less RSS), 13 s
// with 4.
func pluginRuns() int { return 8 * runtime.NumCPU() }

// boundedExec runs at most cap(slots) CNI plugins at once.
type boundedExec struct {
	invoke.Exec
	slots chan struct{}
}

func newBoundedExec(e invoke.Exec, n int) *boundedExec {
	return &boundedExec{Exec: e, slots: make(chan struct{}, max(n, 1))}
}

func (e *boundedExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.slots }()
	return e.Exec.ExecPlugin(ctx, pluginPath, stdinData, environ)
}
