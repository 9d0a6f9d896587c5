package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
)

// events are the reasons and messages of a pod's events, one per line.
func (nd *node) events(pod string) string {
	evs, err := nd.st.Snapshot().Events(memdb.NewWatchSet(), "Pod/default/"+pod)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s: %s\n", e.Reason, e.Message)
	}
	return b.String()
}

func (nd *node) waitEvent(pod, substr string, timeout time.Duration) {
	nd.t.Helper()
	nd.waitFor("event "+substr, func() string {
		if ev := nd.events(pod); !strings.Contains(ev, substr) {
			return "events:\n" + ev
		}
		return ""
	}, timeout)
}

func condition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestLivenessAndReadinessProbes: a failing liveness probe restarts the
// container with the back-off; readiness flips Ready both ways without a
// restart; a probe naming a port the container does not have keeps that
// container from starting and names the port.
func TestLivenessAndReadinessProbes(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("live.yaml", `apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    ports: [{name: http, containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-Probe, value: liveness}]}
      periodSeconds: 1
      failureThreshold: 2
`)
	nd.write("ready.yaml", `apiVersion: v1
kind: Pod
metadata: {name: ready}
spec:
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      failureThreshold: 1
  - name: tcp
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
`)
	nd.write("badport.yaml", `apiVersion: v1
kind: Pod
metadata: {name: badport}
spec:
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    ports: [{name: http, containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /healthz, port: metrics}
`)

	// Readiness: not ready until the probe passed, then both ways.
	isReady := func(want bool) func(corev1.ContainerStatus) bool {
		return func(cs corev1.ContainerStatus) bool { return cs.State.Running != nil && cs.Ready == want }
	}
	nd.waitState("ready", "app", 30*time.Second, isReady(true))
	nd.waitState("ready", "tcp", 30*time.Second, isReady(true))
	nd.waitFor("pod Ready", func() string {
		if p := nd.pod("ready"); !condition(p, corev1.PodReady) || !condition(p, corev1.ContainersReady) {
			return fmt.Sprintf("conditions %+v", p.Status.Conditions)
		}
		return ""
	}, 10*time.Second)
	ip := nd.pod("ready").Status.PodIP
	if _, err := httpGet("http://" + ip + ":8080/fail-health"); err != nil {
		t.Fatal(err)
	}
	nd.waitState("ready", "app", 10*time.Second, isReady(false))
	if p := nd.pod("ready"); condition(p, corev1.PodReady) {
		t.Errorf("pod Ready with an unready container: %+v", p.Status.Conditions)
	}
	nd.waitEvent("ready", "Readiness probe failed: HTTP probe failed with statuscode: 500", 5*time.Second)
	if _, err := httpGet("http://" + ip + ":8080/heal"); err != nil {
		t.Fatal(err)
	}
	cs := nd.waitState("ready", "app", 10*time.Second, isReady(true))
	if cs.RestartCount != 0 {
		t.Errorf("readiness restarted the container: %d", cs.RestartCount)
	}
	nd.waitFor("pod Ready again", func() string {
		if p := nd.pod("ready"); !condition(p, corev1.PodReady) {
			return fmt.Sprintf("conditions %+v", p.Status.Conditions)
		}
		return ""
	}, 10*time.Second)

	// Liveness: killed within about failureThreshold periods, restarted
	// after the 10 s back-off.
	nd.waitState("live", "app", 30*time.Second, running)
	liveIP := nd.pod("live").Status.PodIP
	failedAt := time.Now()
	if _, err := httpGet("http://" + liveIP + ":8080/fail-health"); err != nil {
		t.Fatal(err)
	}
	cs = nd.waitState("live", "app", 15*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.LastTerminationState.Terminated != nil || cs.State.Terminated != nil
	})
	killed := cs.LastTerminationState.Terminated
	if killed == nil {
		killed = cs.State.Terminated
	}
	if d := killed.FinishedAt.Sub(failedAt); d > 6*time.Second {
		t.Errorf("killed %s after the health check began failing; want within ~2 periods and the 2 s grace", d)
	}
	if !strings.Contains(killed.Message, "liveness") {
		t.Errorf("last state of the killed container: %+v", killed)
	}
	nd.waitEvent("live", "Liveness probe failed: HTTP probe failed with statuscode: 500", 5*time.Second)
	nd.waitEvent("live", "failed liveness probe, will be restarted", 5*time.Second)
	cs = nd.waitState("live", "app", 20*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.State.Running != nil && cs.RestartCount == 1
	})
	if d := cs.State.Running.StartedAt.Sub(killed.FinishedAt.Time); d > 5*time.Second {
		t.Errorf("restarted %s after the kill; the first restart is at once, as kubelet's", d)
	}

	// A probe port name the container does not have.
	cs = nd.waitState("badport", "app", 20*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CreateContainerConfigError"
	})
	if !strings.Contains(cs.State.Waiting.Message, `"metrics"`) {
		t.Errorf("config error message does not name the port: %q", cs.State.Waiting.Message)
	}
	if p := nd.pod("ready"); p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("other pod disturbed: %+v", p.Status.ContainerStatuses[0])
	}
}

// TestStartupProbeGates: until the startup probe succeeds the container is
// neither started nor ready, and a liveness probe that would fail meanwhile
// does not run.
func TestStartupProbeGates(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("slow.yaml", `apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3; touch /tmp/started; sleep 3600 & wait"]
    startupProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 10
    livenessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: [sh, -c, "test -f /tmp/started"]}
      periodSeconds: 1
`)
	cs := nd.waitState("slow", "app", 30*time.Second, running)
	startedAt := cs.State.Running.StartedAt.Time
	for time.Since(startedAt) < 2500*time.Millisecond {
		p := nd.pod("slow")
		cs := p.Status.ContainerStatuses[0]
		if cs.Ready || (cs.Started != nil && *cs.Started) || condition(p, corev1.PodReady) {
			t.Fatalf("%s after the start: ready %t started %v; want neither before the startup probe passed", time.Since(startedAt), cs.Ready, cs.Started)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cs = nd.waitState("slow", "app", 15*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.Ready && cs.Started != nil && *cs.Started
	})
	if cs.RestartCount != 0 || cs.State.Running == nil {
		t.Errorf("container restarted while starting: %+v", cs)
	}
	if ev := nd.events("slow"); !strings.Contains(ev, "Startup probe failed") || strings.Contains(ev, "Liveness probe failed") {
		t.Errorf("events: want startup failures and no liveness failure:\n%s", ev)
	}
	time.Sleep(2 * time.Second)
	if cs := nd.pod("slow").Status.ContainerStatuses[0]; cs.RestartCount != 0 || !cs.Ready {
		t.Errorf("after starting: %+v", cs)
	}
}

// TestInitContainers: init containers run in order to completion before
// the app; a sidecar keeps running beside it; a failing init container
// fails the pod under Never and loops with back-off under OnFailure.
func TestInitContainers(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("init.yaml", `apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "echo first; sleep 1"]
  - name: sidecar
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
  - name: second
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "echo second"]
  containers:
  - name: app
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
`)
	nd.write("never.yaml", `apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  restartPolicy: Never
  initContainers:
  - name: fails
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "exit 2"]
  containers:
  - name: app
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["true"]
`)
	nd.write("onfailure.yaml", `apiVersion: v1
kind: Pod
metadata: {name: onfailure}
spec:
  restartPolicy: OnFailure
  initContainers:
  - name: fails
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "exit 2"]
  containers:
  - name: app
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["true"]
`)
	app := nd.waitState("init", "app", 30*time.Second, running)
	p := nd.pod("init")
	byName := map[string]corev1.ContainerStatus{}
	for _, cs := range p.Status.InitContainerStatuses {
		byName[cs.Name] = cs
	}
	first, second, side := byName["first"], byName["second"], byName["sidecar"]
	if first.State.Terminated == nil || first.State.Terminated.Reason != "Completed" || second.State.Terminated == nil || second.State.Terminated.Reason != "Completed" {
		t.Fatalf("init containers not completed: %+v", p.Status.InitContainerStatuses)
	}
	if side.State.Running == nil || !side.Ready {
		t.Errorf("sidecar not running: %+v", side)
	}
	if first.State.Terminated.FinishedAt.After(side.State.Running.StartedAt.Time) ||
		side.State.Running.StartedAt.After(second.State.Terminated.StartedAt.Time) ||
		second.State.Terminated.FinishedAt.After(app.State.Running.StartedAt.Time) {
		t.Errorf("out of order: first %v–%v, sidecar from %v, second %v–%v, app from %v",
			first.State.Terminated.StartedAt, first.State.Terminated.FinishedAt, side.State.Running.StartedAt,
			second.State.Terminated.StartedAt, second.State.Terminated.FinishedAt, app.State.Running.StartedAt)
	}
	if l := nd.logs("init", "first", false); !strings.Contains(l, "first") {
		t.Errorf("log of the first init container: %q", l)
	}
	nd.waitFor("pod initialized and ready", func() string {
		if p := nd.pod("init"); !condition(p, corev1.PodInitialized) || !condition(p, corev1.PodReady) || p.Status.Phase != corev1.PodRunning {
			return fmt.Sprintf("%s %+v", p.Status.Phase, p.Status.Conditions)
		}
		return ""
	}, 10*time.Second)

	nd.waitFor("pod Failed under Never", func() string {
		p := nd.pod("never")
		if p == nil || p.Status.Phase != corev1.PodFailed {
			return fmt.Sprintf("%+v", p)
		}
		return ""
	}, 30*time.Second)
	p = nd.pod("never")
	if cs := p.Status.InitContainerStatuses[0]; cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 2 || cs.RestartCount != 0 {
		t.Errorf("failed init container: %+v", cs)
	}
	if cs := p.Status.ContainerStatuses[0]; cs.State.Waiting == nil || cs.State.Waiting.Reason != "PodInitializing" {
		t.Errorf("app container of a pod whose init failed: %+v", cs.State)
	}
	if condition(p, corev1.PodInitialized) {
		t.Errorf("Initialized with a failed init container")
	}

	nd.waitState("onfailure", "fails", 30*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	})
	p = nd.pod("onfailure")
	var initStatus corev1.ContainerStatus
	for _, s := range p.Status.InitContainerStatuses {
		initStatus = s
	}
	if initStatus.State.Waiting == nil || p.Status.Phase != corev1.PodPending {
		t.Errorf("pod with a crash-looping init container: %s %+v", p.Status.Phase, initStatus)
	}
	nd.waitFor("init retried", func() string {
		p := nd.pod("onfailure")
		if p.Status.InitContainerStatuses[0].RestartCount < 1 {
			return fmt.Sprintf("restarts %d", p.Status.InitContainerStatuses[0].RestartCount)
		}
		return ""
	}, 20*time.Second)
	if app := nd.pod("onfailure").Status.ContainerStatuses[0]; app.State.Waiting == nil || app.State.Waiting.Reason != "PodInitializing" {
		t.Errorf("app started before its init container succeeded: %+v", app.State)
	}
}

// TestLifecycleHooks: postStart runs right after the start; preStop runs
// before SIGTERM; a failing postStart hook is reported and kills the run.
func TestLifecycleHooks(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("hooks.yaml", `apiVersion: v1
kind: Pod
metadata: {name: hooks}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: app
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "trap 'echo term; sleep 1; exit 0' TERM; echo up; while true; do sleep 0.1; done"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo poststart > /proc/1/fd/1"]}
      preStop:
        exec: {command: [sh, -c, "echo prestop > /proc/1/fd/1; sleep 1"]}
`)
	nd.write("badhook.yaml", `apiVersion: v1
kind: Pod
metadata: {name: badhook}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo no luck; exit 7"]}
`)
	nd.waitState("hooks", "app", 30*time.Second, running)
	nd.waitFor("postStart ran", func() string {
		if l := nd.logs("hooks", "app", false); !strings.Contains(l, "poststart") {
			return "log: " + l
		}
		return ""
	}, 10*time.Second)

	nd.waitEvent("badhook", "FailedPostStartHook", 30*time.Second)
	if ev := nd.events("badhook"); !strings.Contains(ev, "no luck") {
		t.Errorf("postStart failure event without the hook's output:\n%s", ev)
	}
	cs := nd.waitState("badhook", "app", 20*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.LastTerminationState.Terminated != nil || cs.State.Terminated != nil
	})
	if cs.State.Running != nil && cs.RestartCount == 0 {
		t.Errorf("container with a failed postStart hook still runs: %+v", cs)
	}

	// The pod directory (and its logs) goes with the pod: follow the log
	// file while the pod stops.
	p := nd.pod("hooks")
	logFile := logPath(nd.agent.podDir(p), "app", 0)
	if err := os.Remove(filepath.Join(nd.manifests, "hooks.yaml")); err != nil {
		t.Fatal(err)
	}
	var last string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil && nd.pod("hooks") != nil {
		if b, err := os.ReadFile(logFile); err == nil && len(b) > 0 {
			last = string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pre, term := strings.Index(last, "prestop"), strings.Index(last, "term")
	if pre < 0 || term < 0 || pre > term {
		t.Errorf("log while stopping: want prestop before term:\n%s", last)
	}
}
