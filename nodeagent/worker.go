package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/keelson/keelson/nodeagent/network"
	"github.com/keelson/keelson/nodeagent/runtime"
)

// configRetry is how often a container that cannot start for want of a
// ConfigMap, Secret or path is tried again when nothing else wakes its pod.
const configRetry = 2 * time.Second

// ctrState is what a worker knows of one container of its pod. Owned by
// the worker's goroutine.
type ctrState struct {
	name string
	// id is the containerd container of the current (or last) run; "" before
	// the first start.
	id        string
	running   bool
	startedAt time.Time
	// restarts counts restarts (the first run is 0).
	restarts int
	// exit is the last termination, lastExit the one before it.
	exit, lastExit *exitInfo
	backoff        backoff
	// waiting is why the container is not running (when it is not
	// terminated for good): ContainerCreating, ErrImagePull,
	// ImagePullBackOff, CrashLoopBackOff, CreateContainerError...
	waitingReason, waitingMessage string
	imageID                       string
	// probes is what the current run's probes concluded (nil when not
	// running); prober runs them (nil without probes or hook). See
	// lifecycle.go.
	probes      *probeState
	prober      *prober
	hookPending bool   // the postStart hook of this run has not finished
	adopted     bool   // this run was adopted from an earlier agent
	killMsg     string // why the agent is killing this run
}

type exitInfo struct {
	code       int
	reason     string // Completed, Error, OOMKilled
	message    string
	startedAt  time.Time
	finishedAt time.Time
	id         string
}

// exitEvent is a container exit, sent by the goroutine waiting on it.
type exitEvent struct {
	name, id string
	status   runtime.ExitStatus
}

// podWorker runs one pod. Its goroutine owns every field below mu; the
// agent only hands it new specs (update) and removal (remove).
type podWorker struct {
	a   *Agent
	key string // namespace/name

	mu      sync.Mutex
	next    *corev1.Pod
	removed bool
	kick    chan struct{}

	exits        chan exitEvent
	probeResults chan probeResult
	done         chan struct{}

	pod          *corev1.Pod
	sandbox      *network.Sandbox
	files        podFiles
	containers   map[string]*ctrState
	sandboxErr   string
	sandboxRetry backoff
	started      time.Time
	initDone     bool // every regular init container completed
	waiters      sync.WaitGroup
}

func newWorker(a *Agent, pod *corev1.Pod, adopted []runtime.Info) *podWorker {
	w := &podWorker{
		a:            a,
		key:          pod.Namespace + "/" + pod.Name,
		next:         pod,
		kick:         make(chan struct{}, 1),
		exits:        make(chan exitEvent, 16),
		probeResults: make(chan probeResult, 16),
		done:         make(chan struct{}),
		containers:   map[string]*ctrState{},
		started:      a.now(),
	}
	w.adopt(adopted)
	w.kick <- struct{}{}
	return w
}

// update hands the worker a new spec of its pod. A pod that differs from
// the one it has only in status (the controller hands back what this node
// reported) is nothing to act on: waking every worker of the node on each
// report of one of its pods made starting N pods cost N² syncs.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	same := w.next != nil && sameButStatus(w.next, pod)
	if !same {
		w.next = pod
	}
	w.mu.Unlock()
	if !same {
		w.poke()
	}
}

// sameButStatus tells whether two versions of a pod differ at most in
// their status.
func sameButStatus(a, b *corev1.Pod) bool {
	return equality.Semantic.DeepEqual(a.ObjectMeta, b.ObjectMeta) && equality.Semantic.DeepEqual(a.Spec, b.Spec)
}

// remove asks the worker to stop the pod and clean up after it.
func (w *podWorker) remove() {
	w.mu.Lock()
	w.removed = true
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// adopt takes over containers that run from an earlier agent: nothing is
// restarted, their restart counts and start times are kept.
func (w *podWorker) adopt(infos []runtime.Info) {
	for _, in := range infos {
		name := in.Labels[runtime.LabelContainerName]
		if name == "" {
			continue
		}
		restarts := in.RestartCount()
		st := w.containers[name]
		if st != nil && st.restarts > restarts {
			// An older run of the same container: only its exit matters.
			if st.lastExit == nil && in.State != runtime.StateRunning {
				st.lastExit = exitOf(in)
			}
			w.a.removeLater(in.ID)
			continue
		}
		if st != nil && st.id != "" && st.id != in.ID {
			w.a.removeLater(st.id)
		}
		st = &ctrState{name: name, id: in.ID, restarts: restarts, startedAt: in.CreatedAt, imageID: in.Image, adopted: true}
		if !in.CreatedAt.IsZero() && in.CreatedAt.Before(w.started) {
			// The pod started when its oldest container did, not now.
			w.started = in.CreatedAt
		}
		if in.State == runtime.StateRunning {
			st.running = true
		} else {
			st.exit = exitOf(in)
			st.backoff = st.backoff.exited(in.CreatedAt, in.ExitedAt)
		}
		w.containers[name] = st
	}
}

func exitOf(in runtime.Info) *exitInfo {
	return &exitInfo{code: in.ExitCode, reason: exitReason(in.ExitCode, false), startedAt: in.CreatedAt, finishedAt: in.ExitedAt, id: in.ID}
}

func exitReason(code int, oom bool) string {
	switch {
	case oom:
		return "OOMKilled"
	case code == 0:
		return "Completed"
	default:
		return "Error"
	}
}

// run is the worker's goroutine. It returns when the pod was removed and
// cleaned up, or when ctx ends (the agent stops; containers keep running).
func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	defer w.waiters.Wait()
	for _, st := range w.containers {
		if st.running {
			w.watch(ctx, st.name, st.id)
		}
	}
	var timer *time.Timer
	for {
		var wake <-chan time.Time
		if d := w.nextWake(); d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			wake = timer.C
		}
		changed := true
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case ev := <-w.exits:
			w.exited(ev)
		case r := <-w.probeResults:
			changed = w.probed(ctx, r)
		case <-wake:
		}
		if timer != nil {
			timer.Stop()
		}
		if !changed {
			continue
		}
		w.mu.Lock()
		removed, next := w.removed, w.next
		w.mu.Unlock()
		if removed {
			w.terminate(ctx)
			return
		}
		if next != w.pod {
			w.pod = next
		}
		w.sync(ctx)
	}
}

// nextWake is when a back-off ends, if any. A failed pull is also looked
// at again a second later, so that its status turns from ErrImagePull to
// ImagePullBackOff for the wait, as kubelet shows it.
func (w *podWorker) nextWake() time.Duration {
	now := w.a.now()
	var d time.Duration
	consider := func(x time.Duration) {
		if x > 0 && (d == 0 || x < d) {
			d = x
		}
	}
	consider(w.sandboxRetry.wait(now))
	for _, st := range w.containers {
		if !st.running {
			x := st.backoff.wait(now)
			if st.waitingReason == "ErrImagePull" {
				x = min(x, time.Second)
			}
			consider(x)
		}
	}
	return d
}

func (w *podWorker) exited(ev exitEvent) {
	st := w.containers[ev.name]
	if st == nil || st.id != ev.id || !st.running {
		return
	}
	s := ev.status
	st.running = false
	st.lastExit = st.exit
	st.exit = &exitInfo{code: s.Code, reason: exitReason(s.Code, s.OOMKilled), startedAt: st.startedAt, finishedAt: s.ExitedAt, id: st.id}
	if s.Err != nil {
		st.exit.message = s.Err.Error()
	}
	if why := st.runEnded(); why != "" {
		st.exit.message = why
	}
	st.backoff = st.backoff.exited(st.startedAt, s.ExitedAt)
	typ := corev1.EventTypeNormal
	if st.exit.reason != "Completed" {
		typ = corev1.EventTypeWarning
	}
	w.a.event(w.pod, typ, "Exited", fmt.Sprintf("container %s exited with code %d (%s)", st.name, s.Code, st.exit.reason))
}

// sync makes the pod's containers match its spec, once.
func (w *podWorker) sync(ctx context.Context) {
	pod := w.pod
	now := w.a.now()
	if !w.ensureSandbox(ctx, pod, now) {
		w.publish()
		return
	}
	if !w.syncInit(ctx, pod, now) {
		w.publish()
		return
	}
	for i := range pod.Spec.Containers {
		w.step(ctx, pod, &pod.Spec.Containers[i], pod.Spec.RestartPolicy, now)
	}
	w.publish()
}

// shouldRestart applies the pod's restart policy to an exited container.
func shouldRestart(policy corev1.RestartPolicy, code int) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return code != 0
	default:
		return true
	}
}

// ensureSandbox gives the pod its network namespace and files; it reports
// whether containers can start.
func (w *podWorker) ensureSandbox(ctx context.Context, pod *corev1.Pod, now time.Time) bool {
	if w.files.resolv != "" && (pod.Spec.HostNetwork || w.sandbox != nil) {
		return true
	}
	if w.sandboxRetry.wait(now) > 0 {
		return false
	}
	ref := network.PodRef{UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name}
	var ip string
	if !pod.Spec.HostNetwork {
		sb, err := w.a.net.Setup(ctx, ref, hostPorts(pod))
		if err != nil {
			w.sandboxErr = err.Error()
			w.sandboxRetry = w.sandboxRetry.failed(now)
			w.a.event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
			return false
		}
		w.sandbox = sb
		ip = sb.IP.String()
	} else {
		ip = w.a.HostIP
	}
	files, err := w.a.writePodFiles(pod, ip)
	if err != nil {
		w.sandboxErr = err.Error()
		w.sandboxRetry = w.sandboxRetry.failed(now)
		w.a.event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		return false
	}
	w.files = files
	w.sandboxErr = ""
	return true
}

func hostPorts(pod *corev1.Pod) []network.PortMapping {
	var out []network.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := string(p.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			out = append(out, network.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
	}
	return out
}

// start pulls the image if needed and starts one run of a container.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, st *ctrState) {
	now := w.a.now()
	if err := w.a.pullImage(ctx, pod, c); err != nil {
		st.waitingReason, st.waitingMessage = "ErrImagePull", err.Error()
		if errors.Is(err, runtime.ErrImageNeverPull) {
			st.waitingReason = "ErrImageNeverPull"
		}
		st.backoff = st.backoff.failed(now)
		w.a.event(pod, corev1.EventTypeWarning, "Failed", fmt.Sprintf("container %s: %v", c.Name, err))
		return
	}
	restarts := st.restarts
	if st.exit != nil || st.id != "" {
		restarts++
	}
	podDir := w.a.podDir(pod)
	lp := logPath(podDir, c.Name, restarts)
	if err := os.MkdirAll(filepath.Dir(lp), 0o755); err != nil {
		st.waitingReason, st.waitingMessage = "CreateContainerError", err.Error()
		st.backoff = st.backoff.failed(now)
		return
	}
	netns := ""
	if w.sandbox != nil {
		netns = w.sandbox.NetNSPath
	}
	spec, err := w.specFor(pod, c, restarts, netns, lp)
	if err != nil {
		if st.waitingMessage != err.Error() {
			w.a.event(pod, corev1.EventTypeWarning, "Failed", err.Error())
		}
		st.waitingReason, st.waitingMessage = "CreateContainerConfigError", err.Error()
		// Retried at every sync, and at least every configRetry.
		st.backoff.until = now.Add(configRetry)
		return
	}
	if st.id != "" {
		// The previous run's container goes; its log file stays for --previous.
		if err := w.a.rt.Remove(ctx, st.id); err != nil {
			w.a.log.Warn("remove exited container", "pod", w.key, "container", c.Name, "id", st.id, "err", err)
		}
		st.id = ""
	}
	ctr, err := w.a.rt.Start(ctx, spec)
	if err != nil {
		reason := "RunContainerError"
		switch {
		case errors.Is(err, runtime.ErrCommandNotFound):
			reason = "CreateContainerError"
		case errors.Is(err, runtime.ErrRunAsRoot):
			reason = "CreateContainerConfigError"
		}
		st.waitingReason, st.waitingMessage = reason, err.Error()
		st.restarts = restarts
		st.backoff = st.backoff.failed(now)
		w.a.event(pod, corev1.EventTypeWarning, "Failed", fmt.Sprintf("container %s: %v", c.Name, err))
		return
	}
	st.id, st.running, st.startedAt, st.restarts = ctr.ID, true, ctr.StartedAt, restarts
	st.waitingReason, st.waitingMessage = "", ""
	w.a.event(pod, corev1.EventTypeNormal, "Started", fmt.Sprintf("started container %s", c.Name))
	w.a.observeStart(pod, w.started, st)
	w.watch(ctx, c.Name, ctr.ID)
}

// watch forwards the exit of a container run to the worker.
func (w *podWorker) watch(ctx context.Context, name, id string) {
	err := w.a.rt.OnExit(ctx, id, func(s runtime.ExitStatus, exited bool) {
		if !exited {
			return
		}
		ev := exitEvent{name: name, id: id, status: s}
		select {
		case w.exits <- ev:
		default:
			// The worker is behind (or is the caller): hand it over
			// without holding up the runtime, until the worker ends.
			go func() {
				select {
				case w.exits <- ev:
				case <-ctx.Done():
				case <-w.done:
				}
			}()
		}
	})
	if err != nil {
		w.a.log.Warn("wait for container", "pod", w.key, "container", name, "err", err)
	}
}

// teardown removes what is left of a stopped pod: its sandbox, its files
// and its status.
func (w *podWorker) teardown(ctx context.Context, pod *corev1.Pod) {
	if !pod.Spec.HostNetwork {
		ref := network.PodRef{UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name}
		if err := w.a.net.Teardown(ctx, ref); err != nil {
			w.a.log.Warn("tear down pod network", "pod", w.key, "err", err)
		}
	}
	if err := os.RemoveAll(w.a.podDir(pod)); err != nil {
		w.a.log.Warn("remove pod directory", "pod", w.key, "err", err)
	}
	w.a.forget(pod)
}
