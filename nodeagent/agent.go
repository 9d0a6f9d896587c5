package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/nodeagent/network"
	"github.com/keelson/keelson/nodeagent/runtime"
	"github.com/keelson/keelson/store"
)

// Log rotation, as kubelet's defaults: 10 MiB per file, 5 files (the
// current one and 4 rotated ones).
const (
	logMaxBytes   = 10 << 20
	logMaxFiles   = 5
	logCheckEvery = 10 * time.Second
)

// Config is what an Agent needs.
type Config struct {
	Node    string
	DataDir string
	// HostIP is the node's address, reported as the pods' hostIP.
	HostIP  string
	Runtime *runtime.Runtime
	Network *network.Manager
	// Store receives pod status and events.
	Store *store.Store
	// Credentials for image pulls (a docker config.json), may be empty.
	Credentials runtime.Credentials
	// DNS is what pods' resolv.conf names (ClusterFirst).
	DNS network.DNSConfig
	Log *slog.Logger
	Now func() time.Time
	// OnStart, when set, is told how long each first container start of a
	// pod took from the agent seeing the pod (benchmarks).
	OnStart func(pod string, d time.Duration)
}

// Agent runs the pods of one node. Create it with New and run it with Run.
type Agent struct {
	Config
	log *slog.Logger
	now func() time.Time
	rt  *runtime.Runtime
	net *network.Manager

	mu       sync.Mutex
	workers  map[types.UID]*podWorker
	adopted  map[types.UID][]runtime.Info // containers found at start, by pod UID
	orphans  []string                     // container IDs to remove
	haveGood bool                         // a desired set was applied
	ctx      context.Context              // the Run context, for workers
	wg       sync.WaitGroup

	// configs are the ConfigMaps and Secrets of the desired set.
	configs *configStore
	// volMu serialises setting up, refreshing and releasing pod volumes
	// (volumes.go); volGone holds the pods being removed.
	volMu       sync.Mutex
	volGone     map[types.UID]bool
	nodeResOnce sync.Once
	nodeRes     nodeResources
	// logRotation is how container logs are rotated: logMaxBytes,
	// logMaxFiles and logCheckEvery, which tests make smaller.
	logRotation logRotation
}

// logRotation is when and how far container logs are rotated.
type logRotation struct {
	maxBytes   int64
	maxFiles   int
	checkEvery time.Duration
}

// New returns an agent; it does nothing until Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Node == "" || cfg.DataDir == "" || cfg.Runtime == nil || cfg.Network == nil || cfg.Store == nil {
		return nil, fmt.Errorf("agent: node, data dir, runtime, network and store are required")
	}
	a := &Agent{Config: cfg, log: cfg.Log, now: cfg.Now, rt: cfg.Runtime, net: cfg.Network, workers: map[types.UID]*podWorker{},
		configs: &configStore{}, volGone: map[types.UID]bool{},
		logRotation: logRotation{maxBytes: logMaxBytes, maxFiles: logMaxFiles, checkEvery: logCheckEvery}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Run adopts what runs from an earlier agent, then follows source until ctx
// ends. Containers keep running when it returns.
func (a *Agent) Run(ctx context.Context, source PodSource) error {
	if err := a.adoptAll(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	a.wg.Go(func() { a.rotateLogs(ctx) })
	err := source.Run(ctx, a.Update)
	<-ctx.Done()
	a.wg.Wait()
	return err
}

// adoptAll lists the containers left by an earlier agent.
func (a *Agent) adoptAll(ctx context.Context) error {
	infos, err := a.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("agent: list containers: %w", err)
	}
	a.adopted = map[types.UID][]runtime.Info{}
	for _, in := range infos {
		uid := in.Labels[runtime.LabelPodUID]
		if uid == "" {
			continue
		}
		a.adopted[types.UID(uid)] = append(a.adopted[types.UID(uid)], in)
	}
	if n := len(infos); n > 0 {
		a.log.Info("found containers of an earlier agent", "containers", n, "pods", len(a.adopted))
	}
	return nil
}

// Update makes the node run exactly the desired pods.
func (a *Agent) Update(d Desired) {
	if d.Rejected {
		for _, is := range d.Issues {
			a.eventKey("", corev1.EventTypeWarning, "InvalidManifest", is.String())
		}
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil || a.ctx.Err() != nil {
		return
	}
	want := make(map[types.UID]*corev1.Pod, len(d.Pods))
	for _, p := range d.Pods {
		p = p.DeepCopy()
		if p.Spec.NodeName == "" {
			p.Spec.NodeName = a.Node
		}
		if p.Spec.RestartPolicy == "" {
			p.Spec.RestartPolicy = corev1.RestartPolicyAlways
		}
		want[p.UID] = p
	}
	changed := a.configs.set(d.ConfigMaps, d.Secrets)
	for uid, w := range a.workers {
		if _, ok := want[uid]; !ok {
			w.mu.Lock()
			p := w.next
			w.mu.Unlock()
			a.releaseVolumes(p)
			w.remove()
		}
	}
	for uid, p := range want {
		if w, ok := a.workers[uid]; ok {
			w.update(p)
			continue
		}
		w := newWorker(a, p, a.adopted[uid])
		delete(a.adopted, uid)
		a.workers[uid] = w
		a.wg.Go(func() { w.run(a.ctx) })
	}
	if len(changed) > 0 {
		// Config the pods use changed: rewrite their volumes in place, and
		// wake their workers (a container waiting for it can start).
		for uid, p := range want {
			if usesAny(p, changed) {
				a.refreshVolumes(p)
				a.workers[uid].poke()
			}
		}
	}
	if !a.haveGood {
		a.haveGood = true
		a.cleanupOrphans(a.ctx)
	}
}

// cleanupOrphans removes what an earlier agent ran for pods that are no
// longer desired: their containers and their network sandboxes. a.mu is held.
func (a *Agent) cleanupOrphans(ctx context.Context) {
	var ids []string
	for uid, infos := range a.adopted {
		for _, in := range infos {
			ids = append(ids, in.ID)
		}
		delete(a.adopted, uid)
	}
	ids = append(ids, a.orphans...)
	a.orphans = nil
	sandboxes, err := a.net.Sandboxes()
	if err != nil {
		a.log.Warn("list pod sandboxes", "err", err)
	}
	var stale []network.SandboxInfo
	for _, sb := range sandboxes {
		if _, ok := a.workers[types.UID(sb.Pod.UID)]; !ok {
			stale = append(stale, sb)
		}
	}
	desired := make(map[types.UID]bool, len(a.workers))
	for uid := range a.workers {
		desired[uid] = true
	}
	if len(ids) == 0 && len(stale) == 0 {
		a.cleanupPodDirs(desired)
		return
	}
	a.log.Info("cleaning up pods removed while the agent was down", "containers", len(ids), "sandboxes", len(stale))
	a.wg.Go(func() {
		for _, id := range ids {
			if err := a.rt.Stop(ctx, id, 30*time.Second); err != nil {
				a.log.Warn("stop orphan container", "id", id, "err", err)
			}
			if err := a.rt.Remove(ctx, id); err != nil {
				a.log.Warn("remove orphan container", "id", id, "err", err)
			}
		}
		for _, sb := range stale {
			if err := a.net.Teardown(ctx, sb.Pod); err != nil {
				a.log.Warn("tear down orphan sandbox", "pod", sb.Pod.Namespace+"/"+sb.Pod.Name, "err", err)
			}
		}
		a.cleanupPodDirs(desired)
	})
}

// removeLater queues an old container of an adopted pod for removal.
func (a *Agent) removeLater(id string) {
	a.orphans = append(a.orphans, id)
}

// forget drops a removed pod's worker and status.
func (a *Agent) forget(pod *corev1.Pod) {
	a.mu.Lock()
	if w, ok := a.workers[pod.UID]; ok && w.pod != nil && w.pod.UID == pod.UID {
		delete(a.workers, pod.UID)
	}
	a.mu.Unlock()
	a.forgetVolumes(pod)
	txn := a.Store.Write()
	defer txn.Abort()
	key := pod.Namespace + "/" + pod.Name
	if otherPodUID(txn, key, pod.UID) {
		return // an edited manifest's new pod has the key now
	}
	if err := txn.DeletePod(key); err == nil {
		_ = txn.Commit()
	}
}

// otherPodUID reports whether the store's pod key belongs to a pod other
// than uid: a pod whose manifest was edited is replaced by a new one (a new
// UID) under the same key, while the old one stops.
func otherPodUID(txn *store.Txn, key string, uid types.UID) bool {
	row, err := txn.Snapshot().Pod(memdb.NewWatchSet(), key)
	return err == nil && row.Object().UID != uid
}

// publish writes the worker's pod with its status to the store, unless
// nothing changed: a write wakes the status reporter, and each report the
// controller's watchers, the node's own follow among them.
func (w *podWorker) publish() {
	p := w.pod.DeepCopy()
	p.Status = w.status()
	w.mu.Lock()
	removing := w.removed
	w.mu.Unlock()
	txn := w.a.Store.Write()
	defer txn.Abort()
	cur, err := txn.Snapshot().Pod(memdb.NewWatchSet(), w.key)
	if err != nil {
		cur = nil
	} else if cur.UID != p.UID {
		if removing {
			return // the key holds the pod that replaced this one (see otherPodUID)
		}
		cur = nil
	}
	if cur != nil {
		keepTransitionTimes(p.Status.Conditions, cur.Status().Conditions)
	}
	row := store.NewPod(p)
	if removing {
		// Being stopped because the controller no longer wants it: shown,
		// but not reported (a restarted controller must not adopt it).
		row.Termination = &store.Termination{Since: w.a.now()}
		if cur != nil && cur.Terminating() {
			row.Termination = cur.Termination
		}
	}
	if cur != nil && cur.TerminatingSince().Equal(row.TerminatingSince()) && equality.Semantic.DeepEqual(cur.Object(), row.Object()) {
		return
	}
	err = txn.UpsertPod(row)
	if err == nil {
		err = txn.Commit()
	}
	if err != nil {
		w.a.log.Error("publish pod status", "pod", w.key, "err", err)
	}
}

// keepTransitionTimes gives each condition whose status did not change
// the time it last changed, as kubelet does.
func keepTransitionTimes(conds, had []corev1.PodCondition) {
	for i := range conds {
		for _, h := range had {
			if h.Type == conds[i].Type && h.Status == conds[i].Status {
				conds[i].LastTransitionTime = h.LastTransitionTime
			}
		}
	}
}

// event records an event about a pod.
func (a *Agent) event(pod *corev1.Pod, typ, reason, msg string) {
	a.eventKey("Pod/"+pod.Namespace+"/"+pod.Name, typ, reason, msg)
}

func (a *Agent) eventKey(key, typ, reason, msg string) {
	txn := a.Store.Write()
	defer txn.Abort()
	if err := txn.AddEvent(&store.Event{ObjectKey: key, Type: typ, Reason: reason, Message: msg}, a.now()); err == nil {
		_ = txn.Commit()
	}
	if typ == corev1.EventTypeWarning {
		a.log.Warn(msg, "object", key, "reason", reason)
	} else {
		a.log.Debug(msg, "object", key, "reason", reason)
	}
}

// pullImage makes a container's image present, following its pull policy
// with Kubernetes' default (Always for :latest or no tag, else IfNotPresent).
func (a *Agent) pullImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container) error {
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = defaultPullPolicy(c.Image)
	}
	progress := func(msg string) {
		a.event(pod, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("image %s: %s", c.Image, msg))
	}
	_, err := a.rt.EnsureImage(ctx, c.Image, policy, a.pullCredentials(pod), progress)
	return err
}

// pullCredentials are the node's registry credentials (--registry-config)
// with those of the pod's imagePullSecrets over them. As kubelet does, a
// pull secret that is missing or unreadable is a warning event and the pull
// is tried without it.
func (a *Agent) pullCredentials(pod *corev1.Pod) runtime.Credentials {
	creds := a.Credentials
	var problems []string
	for _, ref := range pod.Spec.ImagePullSecrets {
		s := a.configs.secret(pod.Namespace, ref.Name)
		if s == nil {
			problems = append(problems, fmt.Sprintf("secret %q not found", ref.Name))
			continue
		}
		c, err := dockerConfigOf(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("secret %q: %v", ref.Name, err))
			continue
		}
		creds = creds.Merge(c)
	}
	if len(problems) > 0 {
		a.event(pod, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
			"unable to use some image pull secrets ("+strings.Join(problems, "; ")+"); the image pull may not succeed")
	}
	return creds
}

// dockerConfigOf reads the registry credentials of a kubernetes.io/
// dockerconfigjson (or the older kubernetes.io/dockercfg) Secret.
func dockerConfigOf(s *corev1.Secret) (runtime.Credentials, error) {
	for _, key := range []string{corev1.DockerConfigJsonKey, corev1.DockerConfigKey} {
		data, ok := s.Data[key]
		if !ok {
			if str, sok := s.StringData[key]; sok {
				data, ok = []byte(str), true
			}
		}
		if ok {
			return runtime.ParseDockerConfig(data)
		}
	}
	return runtime.Credentials{}, fmt.Errorf("type %s has no %s key", s.Type, corev1.DockerConfigJsonKey)
}

// defaultPullPolicy is Kubernetes' default for an image reference.
func defaultPullPolicy(image string) corev1.PullPolicy {
	ref := image
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		return corev1.PullIfNotPresent
	}
	slash := strings.LastIndexByte(ref, '/')
	colon := strings.LastIndexByte(ref, ':')
	if colon <= slash || ref[colon+1:] == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

// podDir is where a pod's files and logs live.
func (a *Agent) podDir(pod *corev1.Pod) string {
	return filepath.Join(a.DataDir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
}

func (a *Agent) writePodFiles(pod *corev1.Pod, ip string) (podFiles, error) {
	dir := filepath.Join(a.podDir(pod), "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return podFiles{}, err
	}
	dns := a.DNS
	dns.Namespace = pod.Namespace
	dns.HostNetwork = pod.Spec.HostNetwork
	if pod.Spec.DNSPolicy != "" {
		dns.Policy = network.DNSPolicy(pod.Spec.DNSPolicy)
	}
	if c := pod.Spec.DNSConfig; c != nil {
		dns.Nameservers = append(dns.Nameservers, c.Nameservers...)
		dns.Searches = append(dns.Searches, c.Searches...)
		for _, o := range c.Options {
			opt := network.DNSOption{Name: o.Name}
			if o.Value != nil {
				opt.Value = *o.Value
			}
			dns.Options = append(dns.Options, opt)
		}
	}
	var aliases []network.HostAlias
	for _, h := range pod.Spec.HostAliases {
		aliases = append(aliases, network.HostAlias{IP: h.IP, Hostnames: h.Hostnames})
	}
	var podIP net.IP
	if !pod.Spec.HostNetwork {
		podIP = net.ParseIP(ip)
	}
	name := podHostname(pod)
	if name == "" { // the host's network: its hosts and hostname files are the node's, not mounted
		name, _ = os.Hostname()
	}
	hosts, resolv, hostname, err := network.WritePodFiles(dir, name, podIP, aliases, dns)
	if err != nil {
		return podFiles{}, fmt.Errorf("pod files: %w", err)
	}
	return podFiles{hosts: hosts, resolv: resolv, hostname: hostname}, nil
}

// observeStart reports how long the first start of a pod's container took.
func (a *Agent) observeStart(pod *corev1.Pod, seen time.Time, st *ctrState) {
	if a.OnStart != nil && st.restarts == 0 {
		a.OnStart(pod.Namespace+"/"+pod.Name, st.startedAt.Sub(seen))
	}
}

// rotateLogs rotates the log files of running containers past logMaxBytes.
func (a *Agent) rotateLogs(ctx context.Context) {
	r := a.logRotation
	t := time.NewTicker(r.checkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		files, _ := filepath.Glob(filepath.Join(a.DataDir, "pods", "*", "logs", "*", "*.log"))
		for _, f := range files {
			// maxFiles counts the current file, as kubelet's containerLogMaxFiles.
			if _, err := runtime.RotateLog(f, r.maxBytes, r.maxFiles-1); err != nil {
				a.log.Warn("rotate log", "file", f, "err", err)
			}
		}
	}
}
