package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// This file holds the parts of a pod's life around its containers' runs:
// init containers and sidecars, probes' consequences, lifecycle hooks and
// the ordered, graceful stop. All of it runs on the worker's goroutine,
// except the hooks and stops, which run in goroutines the worker owns
// (w.waiters) and which touch no worker state.

// isSidecar: an init container with restartPolicy Always starts in order
// with the init containers, then keeps running beside the app containers.
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// initPolicy is how a failed (regular) init container is retried: as the
// pod's policy, except that Always means OnFailure (one that succeeded is
// done).
func initPolicy(pod *corev1.Pod) corev1.RestartPolicy {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.RestartPolicyNever
	}
	return corev1.RestartPolicyOnFailure
}

// specOf is the container of the current spec named name (init or app),
// and the restart policy its runs follow; nil when the spec has none.
func (w *podWorker) specOf(name string) (*corev1.Container, corev1.RestartPolicy) {
	pod := w.pod
	if pod == nil {
		return nil, ""
	}
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; c.Name == name {
			if isSidecar(c) {
				return c, corev1.RestartPolicyAlways
			}
			return c, initPolicy(pod)
		}
	}
	for i := range pod.Spec.Containers {
		if c := &pod.Spec.Containers[i]; c.Name == name {
			return c, pod.Spec.RestartPolicy
		}
	}
	return nil, pod.Spec.RestartPolicy
}

// syncInit runs the init containers in order, each to completion, and
// keeps the sidecars among them running; it reports whether the app
// containers may start. Once initialization finished it stays finished
// (kubelet does not rerun init containers while the pod lives): after an
// agent restart it counts as finished when every regular init container
// exited with 0, or when any app container exists.
func (w *podWorker) syncInit(ctx context.Context, pod *corev1.Pod, now time.Time) bool {
	if !w.initDone {
		for i := range pod.Spec.Containers {
			if st := w.containers[pod.Spec.Containers[i].Name]; st != nil && (st.id != "" || st.exit != nil) {
				w.initDone = true
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if isSidecar(c) {
			st := w.step(ctx, pod, c, corev1.RestartPolicyAlways, now)
			if !w.initDone && !st.started() {
				return false
			}
			continue
		}
		if w.initDone {
			continue
		}
		if st := w.containers[c.Name]; st != nil && !st.running && st.exit != nil && st.exit.code == 0 {
			continue
		}
		w.step(ctx, pod, c, initPolicy(pod), now)
		return false
	}
	w.initDone = true
	return true
}

// step starts container c when it does not run and policy, its back-off
// and its configuration allow it, and starts the prober of a new run.
func (w *podWorker) step(ctx context.Context, pod *corev1.Pod, c *corev1.Container, policy corev1.RestartPolicy, now time.Time) *ctrState {
	st := w.containers[c.Name]
	if st == nil {
		st = &ctrState{name: c.Name, waitingReason: "ContainerCreating"}
		w.containers[c.Name] = st
	}
	if st.running {
		w.ensureProber(ctx, c, st)
		return st
	}
	if st.exit != nil && !shouldRestart(policy, st.exit.code) {
		return st
	}
	if err := checkProbePorts(c); err != nil {
		if st.waitingMessage != err.Error() {
			w.a.event(pod, corev1.EventTypeWarning, "Failed", err.Error())
		}
		st.waitingReason, st.waitingMessage = "CreateContainerConfigError", err.Error()
		return st
	}
	// A missing ConfigMap, Secret or path is retried at every sync (a config
	// arriving pokes the worker), as kubelet does, not after the back-off.
	if d := st.backoff.wait(now); d > 0 && st.waitingReason != "CreateContainerConfigError" {
		switch {
		case st.waitingReason == "ErrImageNeverPull":
		case st.waitingReason == "ErrImagePull" || st.waitingReason == "ImagePullBackOff":
			st.waitingReason = "ImagePullBackOff"
		case st.exit != nil && st.waitingReason != "CreateContainerError" && st.waitingReason != "RunContainerError":
			st.waitingReason = "CrashLoopBackOff"
			st.waitingMessage = fmt.Sprintf("back-off %s restarting failed container %s", d.Round(time.Second), c.Name)
		}
		return st
	}
	w.start(ctx, pod, c, st)
	if st.running {
		st.adopted = false // a run of this agent, even if the last one was adopted
		w.ensureProber(ctx, c, st)
	}
	return st
}

// started: the run is past its postStart hook and its startup probe.
func (st *ctrState) started() bool {
	return st.running && !st.hookPending && st.probes != nil && st.probes.started()
}

// ready: started, and ready per its readiness probe (if any).
func (st *ctrState) ready() bool {
	return st.started() && st.probes.ready()
}

// ensureProber begins the probing of a container run, once per run: its
// probe state, and a prober goroutine when it has probes or a postStart
// hook (not rerun for a container adopted from an earlier agent).
func (w *podWorker) ensureProber(ctx context.Context, c *corev1.Container, st *ctrState) {
	if st.probes != nil {
		return
	}
	st.probes = newProbeState(c, st.startedAt)
	hook := !st.adopted && c.Lifecycle != nil && c.Lifecycle.PostStart != nil
	if !hook && c.LivenessProbe == nil && c.ReadinessProbe == nil && c.StartupProbe == nil {
		return
	}
	st.hookPending = hook
	pctx, cancel := context.WithCancel(ctx)
	p := &prober{cancel: cancel, started: make(chan struct{})}
	st.prober = p
	t := w.target(c, st.id)
	startedAt := st.startedAt
	w.waiters.Go(func() {
		runProber(pctx, t, c, startedAt, hook, p.started, w.probeResults, w.a.now)
	})
}

// runEnded forgets the probing of a run that ended; it returns why the
// agent killed it, if it did.
func (st *ctrState) runEnded() string {
	if st.prober != nil {
		st.prober.stop()
	}
	msg := st.killMsg
	st.prober, st.probes, st.hookPending, st.adopted, st.killMsg = nil, nil, false, false, ""
	return msg
}

// target is how probes and hooks reach a run of c.
func (w *podWorker) target(c *corev1.Container, id string) probeTarget {
	t := probeTarget{rt: w.a.rt, id: id}
	if c != nil {
		t.ports = c.Ports
	}
	switch {
	case w.pod != nil && w.pod.Spec.HostNetwork:
		t.host = w.a.HostIP
	case w.sandbox != nil:
		t.host = w.sandbox.IP.String()
	}
	if t.host == "" {
		t.host = "127.0.0.1"
	}
	return t
}

// probed handles a probe result (or the postStart hook's); it reports
// whether the pod's status may have changed.
func (w *podWorker) probed(ctx context.Context, r probeResult) bool {
	st := w.containers[r.name]
	if st == nil || st.id != r.id || !st.running || st.probes == nil || st.killMsg != "" {
		return false
	}
	pod := w.pod
	c, _ := w.specOf(r.name)
	if r.kind == postStart {
		st.hookPending = false
		if !r.ok {
			w.a.event(pod, corev1.EventTypeWarning, "FailedPostStartHook", fmt.Sprintf("container %s: postStart hook failed: %s", r.name, r.output))
			w.kill(ctx, c, st, "postStart hook failed: "+r.output)
		}
		return true
	}
	verdict := st.probes.record(r.kind, r.ok, r.at)
	if verdict != verdictNone && !r.ok {
		w.a.event(pod, corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", r.kind, r.output))
	}
	switch verdict {
	case verdictChanged:
		if r.kind == startup && st.prober != nil {
			st.prober.markStarted()
		}
		return true
	case verdictKill:
		msg := fmt.Sprintf("container %s failed %s probe, will be restarted", r.name, strings.ToLower(r.kind.String()))
		if !shouldRestart(w.policyOf(r.name), 1) {
			msg = fmt.Sprintf("container %s failed %s probe", r.name, strings.ToLower(r.kind.String()))
		}
		w.a.event(pod, corev1.EventTypeNormal, "Killing", msg)
		w.kill(ctx, c, st, msg)
		return true
	}
	return false
}

func (w *podWorker) policyOf(name string) corev1.RestartPolicy {
	_, p := w.specOf(name)
	return p
}

// grace is the pod's termination grace period (30 s by default).
func grace(pod *corev1.Pod) time.Duration {
	if pod != nil && pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// kill stops a running container on the agent's decision (a failed probe
// or postStart hook): its preStop hook, then SIGTERM, SIGKILL after the
// grace period. Its exit arrives as any exit does, and the restart policy
// and back-off apply.
func (w *podWorker) kill(ctx context.Context, c *corev1.Container, st *ctrState, why string) {
	st.killMsg = why
	if st.prober != nil {
		st.prober.stop()
	}
	pod, t, g := w.pod, w.target(c, st.id), grace(w.pod)
	w.waiters.Go(func() { w.stopContainer(ctx, pod, c, t, g) })
}

// stopContainer runs c's preStop hook (if any) within grace, then stops
// the run with what is left of it. It runs off the worker's goroutine.
func (w *podWorker) stopContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, t probeTarget, grace time.Duration) {
	begin := time.Now()
	if c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		hctx, cancel := context.WithTimeout(ctx, grace)
		err := t.hook(hctx, c.Lifecycle.PreStop)
		cancel()
		if err != nil {
			w.a.event(pod, corev1.EventTypeWarning, "FailedPreStopHook", fmt.Sprintf("container %s: preStop hook failed: %v", c.Name, err))
		}
	}
	left := max(grace-time.Since(begin), 0)
	if err := w.a.rt.Stop(ctx, t.id, left); err != nil {
		w.a.log.Warn("stop container", "pod", w.key, "id", t.id, "err", err)
	}
}

// terminate stops the pod: the probers, then the app (and unfinished init)
// containers in parallel (preStop hook, SIGTERM, SIGKILL after the grace
// period), then the sidecars with what is left of the grace period (at
// least 2 s); then removes containers, the sandbox and the pod's files.
func (w *podWorker) terminate(ctx context.Context) {
	pod := w.pod
	if pod == nil {
		w.mu.Lock()
		pod = w.next
		w.mu.Unlock()
	}
	if w.pod == nil {
		w.pod = pod
	}
	g := grace(pod)
	if w.pod != nil {
		w.publish() // marked as being stopped: no longer reported
	}
	w.a.event(pod, corev1.EventTypeNormal, "Killing", fmt.Sprintf("stopping pod (grace period %s)", g))
	for _, st := range w.containers {
		if st.prober != nil {
			st.prober.stop()
		}
	}
	begin := time.Now()
	stop := func(sidecars bool, g time.Duration) {
		var wg sync.WaitGroup
		for _, st := range w.containers {
			if st.id == "" {
				continue
			}
			c, _ := w.specOf(st.name)
			if (c != nil && isSidecar(c)) != sidecars {
				continue
			}
			id, running, t := st.id, st.running, w.target(c, st.id)
			wg.Go(func() {
				if running {
					w.stopContainer(ctx, pod, c, t, g)
				}
				if err := w.a.rt.Remove(ctx, id); err != nil {
					w.a.log.Warn("remove container", "pod", w.key, "id", id, "err", err)
				}
			})
		}
		wg.Wait()
	}
	stop(false, g)
	stop(true, max(g-time.Since(begin), 2*time.Second))
	w.teardown(ctx, pod)
}

// hook runs a lifecycle handler: exec (exit 0 is success), httpGet
// (200–399), sleep; tcpSocket is accepted and does nothing, as kubelet.
func (t probeTarget) hook(ctx context.Context, h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		var out limitedBuffer
		code, err := t.rt.Exec(ctx, t.id, h.Exec.Command, false, nil, &out, &out)
		if err != nil {
			return err
		}
		if code != 0 {
			msg := fmt.Sprintf("command %q exited with %d", strings.Join(h.Exec.Command, " "), code)
			if s := out.String(); s != "" {
				msg += ": " + s
			}
			return errors.New(msg)
		}
		return nil
	case h.HTTPGet != nil:
		if ok, out := t.httpGet(ctx, h.HTTPGet); !ok {
			return errors.New(out)
		}
		return nil
	case h.Sleep != nil:
		if !sleepCtx(ctx, time.Duration(h.Sleep.Seconds)*time.Second) {
			return ctx.Err()
		}
		return nil
	}
	return nil
}
