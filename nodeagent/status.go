package nodeagent

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// status computes the pod's status from what its worker knows, as kubelet
// does: per-container states, the phase, the conditions and the IPs.
func (w *podWorker) status() corev1.PodStatus {
	pod := w.pod
	s := corev1.PodStatus{HostIP: w.a.HostIP, QOSClass: qosClass(pod)}
	if !w.started.IsZero() {
		t := metav1.NewTime(w.started)
		s.StartTime = &t
	}
	if pod.Spec.HostNetwork {
		s.PodIP = w.a.HostIP
	} else if w.sandbox != nil {
		s.PodIP = w.sandbox.IP.String()
	}
	if s.PodIP != "" {
		s.PodIPs = []corev1.PodIP{{IP: s.PodIP}}
	}
	if s.HostIP != "" {
		s.HostIPs = []corev1.HostIP{{IP: s.HostIP}}
	}
	initDone := w.initDone || len(pod.Spec.InitContainers) == 0
	// restarting counts containers waiting to run again after an exit
	// (CrashLoopBackOff): kubelet counts them as stopped, not waiting.
	var running, waiting, restarting, succeeded, failed int
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		pending := "ContainerCreating"
		if !initDone {
			pending = "PodInitializing"
		}
		cs := w.containerStatus(c, pod.Spec.RestartPolicy, pending)
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			restarting++
		case cs.State.Waiting != nil:
			waiting++
		case cs.State.Terminated.ExitCode == 0:
			succeeded++
		default:
			failed++
		}
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	// Ready: every app container and every sidecar is ready.
	ready := initDone && len(pod.Spec.Containers) > 0
	for _, cs := range s.ContainerStatuses {
		ready = ready && cs.Ready
	}
	initFailed := false
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		policy := initPolicy(pod)
		if isSidecar(c) {
			policy = corev1.RestartPolicyAlways
		}
		cs := w.containerStatus(c, policy, "PodInitializing")
		if isSidecar(c) {
			ready = ready && cs.Ready
		} else if t := cs.State.Terminated; t != nil && !shouldRestart(policy, int(t.ExitCode)) && t.ExitCode != 0 {
			initFailed = true
		}
		s.InitContainerStatuses = append(s.InitContainerStatuses, cs)
	}
	n := len(pod.Spec.Containers)
	switch {
	case initFailed:
		s.Phase = corev1.PodFailed
	case !initDone:
		s.Phase = corev1.PodPending
	case waiting > 0 && running == 0 && succeeded+failed == 0:
		s.Phase = corev1.PodPending
	case running > 0 || waiting > 0 || restarting > 0:
		s.Phase = corev1.PodRunning
		if running == 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			s.Phase = corev1.PodPending
		}
	case succeeded == n:
		s.Phase = corev1.PodSucceeded
	case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways:
		s.Phase = corev1.PodRunning
	default:
		s.Phase = corev1.PodFailed
	}
	now := metav1.NewTime(w.a.now())
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: now, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		return c
	}
	s.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.sandbox != nil || (pod.Spec.HostNetwork && w.files.resolv != ""), "SandboxNotReady"),
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized"),
		cond(corev1.ContainersReady, ready, "ContainersNotReady"),
		cond(corev1.PodReady, ready, "ContainersNotReady"),
		cond(corev1.PodScheduled, true, ""),
	}
	return s
}

// containerStatus is the status of container c, whose runs follow policy;
// pending is its waiting reason before its first start. A running
// container is Started once past its postStart hook and startup probe, and
// Ready once also past its readiness probe (at once without one).
func (w *podWorker) containerStatus(c *corev1.Container, policy corev1.RestartPolicy, pending string) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	st := w.containers[c.Name]
	switch {
	case st == nil:
		msg := ""
		if pending == "ContainerCreating" {
			msg = w.sandboxErr
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: pending, Message: msg}
	case st.running:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(st.startedAt)}
		cs.ContainerID = "containerd://" + st.id
		cs.Started = ptr(st.started())
		cs.Ready = st.ready()
	case st.exit != nil && (st.waitingReason == "" || !shouldRestart(policy, st.exit.code)):
		cs.State.Terminated = terminated(st.exit)
		cs.ContainerID = "containerd://" + st.exit.id
		cs.Started = ptr(false)
	default:
		reason := st.waitingReason
		if reason == "" {
			reason = "ContainerCreating"
		}
		msg := st.waitingMessage
		if reason == "ContainerCreating" && msg == "" {
			msg = w.sandboxErr
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		cs.Started = ptr(false)
	}
	if st != nil {
		cs.RestartCount = int32(st.restarts)
		cs.ImageID = st.imageID
		last := st.lastExit
		if cs.State.Terminated == nil && st.exit != nil {
			last = st.exit
		}
		if last != nil {
			cs.LastTerminationState.Terminated = terminated(last)
		}
	}
	return cs
}

func terminated(e *exitInfo) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode:    int32(e.code),
		Reason:      e.reason,
		Message:     e.message,
		StartedAt:   metav1.NewTime(e.startedAt),
		FinishedAt:  metav1.NewTime(e.finishedAt),
		ContainerID: "containerd://" + e.id,
	}
}

func ptr[T any](v T) *T { return &v }

// qosClass is the pod's QoS class as Kubernetes derives it.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	any, guaranteed := false, true
	for _, c := range pod.Spec.Containers {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, hasL := c.Resources.Limits[r]
			q, hasQ := c.Resources.Requests[r]
			if hasL || hasQ {
				any = true
			}
			if !hasL || (hasQ && q.Cmp(l) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}
