package nodeagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/network"
	"github.com/keelson/keelson/nodeagent/runtime"
	"github.com/keelson/keelson/store"
)

// node is a real agent for a test: its own containerd, network (bridge,
// CIDR), data directory and pod manifests directory.
type node struct {
	t         testing.TB
	name      string
	dataDir   string
	manifests string
	cidr      string
	daemon    *runtime.Daemon
	rt        *runtime.Runtime
	net       *network.Manager
	st        *store.Store
	agent     *Agent
	cancel    context.CancelFunc
	done      chan struct{}
	onStart   func(pod string, d time.Duration)
	// configure, when set, adjusts each agent start() creates before it runs.
	configure func(*Agent)
}

var cidrs = struct {
	sync.Mutex
	n int
}{}

// newNode starts a containerd and an agent; stop() stops the agent only.
func newNode(t testing.TB) *node {
	t.Helper()
	t.Helper()
	gittest.RequireRoot(t, "runs containers with containerd and wires network namespaces")
	cidrs.Lock()
	cidrs.n++
	n := cidrs.n
	cidrs.Unlock()
	nd := &node{
		t:         t,
		name:      fmt.Sprintf("agent-test-%d-%d", os.Getpid()%1000, n),
		dataDir:   t.TempDir(),
		manifests: t.TempDir(),
		cidr:      fmt.Sprintf("10.202.%d.0/24", (os.Getpid()+n)%250),
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := runtime.StartDaemon(context.Background(), filepath.Join(nd.dataDir, "containerd"), log.With("component", "containerd"))
	if err != nil {
		t.Fatal(err)
	}
	nd.daemon = d
	t.Cleanup(func() { nd.teardown() })
	nd.rt, err = runtime.Connect(context.Background(), d.Socket(), "keelson", log)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{testimages.Busybox(t), testimages.Testapp(t)} {
		if _, err := nd.rt.ImportArchive(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	return nd
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs an agent (again) on the node's data directory.
func (nd *node) start() {
	t := nd.t
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	nd.net, err = network.New(network.Config{Node: nd.name, DataDir: filepath.Join(nd.dataDir, "network"), PodCIDR: nd.cidr, RunDir: filepath.Join(nd.dataDir, "netns")}, log)
	if err != nil {
		t.Fatal(err)
	}
	nd.st, err = store.New()
	if err != nil {
		t.Fatal(err)
	}
	nd.agent, err = New(Config{Node: nd.name, DataDir: nd.dataDir, HostIP: "127.0.0.1", Runtime: nd.rt, Network: nd.net, Store: nd.st, Log: log, OnStart: nd.onStart})
	if err != nil {
		t.Fatal(err)
	}
	if nd.configure != nil {
		nd.configure(nd.agent)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan struct{})
	go func() {
		defer close(nd.done)
		if err := nd.agent.Run(ctx, &DirSource{Dir: nd.manifests, Debounce: 20 * time.Millisecond}); err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
}

// stop stops the agent, leaving its containers running.
func (nd *node) stop() {
	nd.cancel()
	<-nd.done
	_ = nd.net.Close()
}

// teardown removes every pod, then stops everything and checks nothing leaked.
func (nd *node) teardown() {
	t := nd.t
	if nd.done != nil {
		select {
		case <-nd.done:
		default:
			entries, _ := os.ReadDir(nd.manifests)
			for _, e := range entries {
				_ = os.Remove(filepath.Join(nd.manifests, e.Name()))
			}
			nd.waitFor("all pods removed", func() string {
				pods, _ := nd.st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
				if len(pods) > 0 {
					return fmt.Sprintf("%d pods left", len(pods))
				}
				return ""
			}, 90*time.Second)
			nd.stop()
		}
	}
	ctx := context.Background()
	if infos, err := nd.rt.List(ctx); err == nil {
		for _, in := range infos {
			t.Errorf("leaked container %s (%s)", in.ID, in.State)
			_ = nd.rt.Stop(ctx, in.ID, time.Second)
			_ = nd.rt.Remove(ctx, in.ID)
		}
	}
	if m, err := network.New(network.Config{Node: nd.name, DataDir: filepath.Join(nd.dataDir, "network"), PodCIDR: nd.cidr, RunDir: filepath.Join(nd.dataDir, "netns")}, nil); err == nil {
		sbs, _ := m.Sandboxes()
		for _, sb := range sbs {
			t.Errorf("leaked sandbox of %s", sb.Pod)
			_ = m.Teardown(ctx, sb.Pod)
		}
		_ = m.Close()
	}
	_ = nd.rt.Close()
	_ = nd.daemon.Stop()
	_ = network.RemoveNode(network.Config{Node: nd.name})
}

func (nd *node) write(name, manifest string) {
	if err := os.WriteFile(filepath.Join(nd.manifests, name), []byte(manifest), 0o644); err != nil {
		nd.t.Fatal(err)
	}
}

func (nd *node) pod(name string) *corev1.Pod {
	p, err := nd.st.Snapshot().Pod(memdb.NewWatchSet(), "default/"+name)
	if err != nil {
		return nil
	}
	return p.Object()
}

func (nd *node) waitFor(what string, f func() string, timeout time.Duration) {
	nd.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			nd.t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitState waits until a container (app or init: their names are unique
// in a pod) of a pod is in the state check accepts.
func (nd *node) waitState(pod, container string, timeout time.Duration, check func(corev1.ContainerStatus) bool) corev1.ContainerStatus {
	nd.t.Helper()
	var last corev1.ContainerStatus
	nd.waitFor(pod+"/"+container, func() string {
		p := nd.pod(pod)
		if p == nil {
			return "no pod"
		}
		for _, cs := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
			if cs.Name == container {
				last = cs
				if check(cs) {
					return ""
				}
				return fmt.Sprintf("state %+v restarts %d", cs.State, cs.RestartCount)
			}
		}
		return "no status"
	}, timeout)
	return last
}

func running(cs corev1.ContainerStatus) bool { return cs.State.Running != nil }

func (nd *node) logs(pod, container string, previous bool) string {
	p := nd.pod(pod)
	if p == nil {
		return ""
	}
	var b strings.Builder
	_ = nd.agent.Logs(context.Background(), p, LogOptions{Container: container, Previous: previous, Tail: -1}, &b)
	return b.String()
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const twoContainers = `apiVersion: v1
kind: Pod
metadata:
  name: duo
  labels: {app: duo}
spec:
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    env: [{name: GREETING, value: hi}]
    ports: [{containerPort: 8080}]
  - name: probe
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "until wget -q -O- http://127.0.0.1:8080/hostname; do sleep 0.1; done; echo; echo done; sleep 3600"]
`

func TestPodContainersShareLocalhostAndNodeReachesPod(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("duo.yaml", twoContainers)
	nd.waitState("duo", "app", 30*time.Second, running)
	nd.waitState("duo", "probe", 30*time.Second, running)
	nd.waitFor("probe reached app over localhost", func() string {
		if l := nd.logs("duo", "probe", false); !strings.Contains(l, "duo") || !strings.Contains(l, "done") {
			return "probe log: " + l
		}
		return ""
	}, 20*time.Second)
	p := nd.pod("duo")
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		t.Fatalf("pod status: %+v", p.Status)
	}
	_, ipnet, _ := net.ParseCIDR(nd.cidr)
	if !ipnet.Contains(net.ParseIP(p.Status.PodIP)) {
		t.Errorf("pod IP %s not in the node's CIDR %s", p.Status.PodIP, nd.cidr)
	}
	body, err := httpGet("http://" + p.Status.PodIP + ":8080/hostname")
	if err != nil || strings.TrimSpace(body) != "duo" {
		t.Errorf("node -> pod IP: %q %v", body, err)
	}

	// A worker that syncs a pod whose status has not changed writes
	// nothing: a write wakes the status reporter, whose report wakes the
	// controller's watchers, the agent among them (a loop).
	modified := func() uint64 {
		row, err := nd.st.Snapshot().Pod(memdb.NewWatchSet(), "default/duo")
		if err != nil {
			t.Fatal(err)
		}
		return row.ModifyIndex
	}
	before := modified()
	nd.agent.mu.Lock()
	for _, w := range nd.agent.workers {
		w.poke()
	}
	nd.agent.mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	if after := modified(); after != before {
		t.Errorf("pod row rewritten (modify index %d → %d) by a sync that changed nothing", before, after)
	}
}

func TestCrashLoopBackOffAndPreviousLogs(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("crash.yaml", `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "echo run at $(date +%s); exit 3"]
`)
	// kubelet's back-off: the first restart is at once, the next after 10 s.
	first := nd.waitState("crash", "c", 30*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	})
	if first.RestartCount != 1 || first.LastTerminationState.Terminated == nil || first.LastTerminationState.Terminated.ExitCode != 3 {
		t.Errorf("in back-off after the second crash: restarts %d, last state %+v", first.RestartCount, first.LastTerminationState)
	}
	exitedAt := first.LastTerminationState.Terminated.FinishedAt.Time
	second := nd.waitState("crash", "c", 30*time.Second, func(cs corev1.ContainerStatus) bool { return cs.RestartCount >= 2 })
	restartedAt := time.Now()
	if second.State.Running != nil {
		restartedAt = second.State.Running.StartedAt.Time
	} else if second.LastTerminationState.Terminated != nil {
		restartedAt = second.LastTerminationState.Terminated.StartedAt.Time
	}
	if d := restartedAt.Sub(exitedAt); d < 9*time.Second || d > 15*time.Second {
		t.Errorf("second restart %s after the crash, want the 10 s back-off", d)
	}
	nd.waitFor("previous log", func() string {
		if l := nd.logs("crash", "c", true); !strings.Contains(l, "run at") {
			return "previous log: " + l
		}
		return ""
	}, 10*time.Second)
}

func TestOOMKilledAndCompleted(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("oom.yaml", `apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "head -c 200000000 /dev/zero | tail"]
    resources:
      limits: {memory: 32Mi}
  - name: ok
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["true"]
`)
	hog := nd.waitState("oom", "hog", 60*time.Second, func(cs corev1.ContainerStatus) bool { return cs.State.Terminated != nil })
	if hog.State.Terminated.Reason != "OOMKilled" {
		t.Errorf("hog terminated with %+v, want OOMKilled", hog.State.Terminated)
	}
	ok := nd.waitState("oom", "ok", 30*time.Second, func(cs corev1.ContainerStatus) bool { return cs.State.Terminated != nil })
	if ok.State.Terminated.Reason != "Completed" || ok.State.Terminated.ExitCode != 0 {
		t.Errorf("ok terminated with %+v, want Completed", ok.State.Terminated)
	}
	nd.waitFor("phase Failed", func() string {
		if p := nd.pod("oom"); p.Status.Phase != corev1.PodFailed {
			return string(p.Status.Phase)
		}
		return ""
	}, 10*time.Second)
}

func TestGracefulAndForcedStop(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("stop.yaml", `apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: ignores-term
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'echo got TERM' TERM; while true; do sleep 0.1; done"]
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
`)
	nd.waitState("stubborn", "ignores-term", 30*time.Second, running)
	nd.waitState("stubborn", "app", 30*time.Second, running)
	start := time.Now()
	if err := os.Remove(filepath.Join(nd.manifests, "stop.yaml")); err != nil {
		t.Fatal(err)
	}
	nd.waitFor("pod removed", func() string {
		if nd.pod("stubborn") != nil {
			return "still there"
		}
		return ""
	}, 30*time.Second)
	if d := time.Since(start); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("stopping took %s; want the 2 s grace period, then SIGKILL", d)
	}
	if _, err := os.Stat(filepath.Join(nd.dataDir, "pods")); err == nil {
		if entries, _ := os.ReadDir(filepath.Join(nd.dataDir, "pods")); len(entries) > 0 {
			t.Errorf("pod directories left: %v", entries)
		}
	}
}

func TestHostPort(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	port := freePort(t)
	nd.write("hp.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hp}
spec:
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    ports: [{containerPort: 8080, hostPort: %d}]
`, port))
	nd.waitState("hp", "app", 30*time.Second, running)
	nd.waitFor("hostPort answers", func() string {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/hostname", port))
		if err != nil || strings.TrimSpace(body) != "hp" {
			return fmt.Sprintf("%q %v", body, err)
		}
		return ""
	}, 10*time.Second)
}

func TestAgentRestartAdoptsContainers(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("duo.yaml", twoContainers)
	nd.waitState("duo", "app", 30*time.Second, running)
	nd.waitState("duo", "probe", 30*time.Second, running)
	before := nd.pod("duo")
	infos, err := nd.rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]uint32{}
	for _, in := range infos {
		pids[in.ID] = in.PID
	}

	nd.stop()
	// A pod removed while the agent is down is cleaned up when it returns.
	nd.write("gone.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: gone}\nspec:\n  containers: [{name: c, image: 'keelson.test/busybox:1', imagePullPolicy: Never, command: [sleep, '3600']}]\n")
	nd.start()
	nd.waitState("gone", "c", 30*time.Second, running)
	nd.stop()
	if err := os.Remove(filepath.Join(nd.manifests, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	nd.start()

	after := nd.waitState("duo", "app", 30*time.Second, running)
	if after.RestartCount != 0 {
		t.Errorf("adopted container restarted: %d", after.RestartCount)
	}
	if p := nd.pod("duo"); p.Status.PodIP != before.Status.PodIP {
		t.Errorf("pod IP changed from %s to %s", before.Status.PodIP, p.Status.PodIP)
	}
	nd.waitFor("orphan pod cleaned up", func() string {
		infos, err := nd.rt.List(context.Background())
		if err != nil {
			return err.Error()
		}
		var ids []string
		for _, in := range infos {
			ids = append(ids, in.ID)
			if in.PodName() == "gone" {
				return "container of the removed pod still there: " + in.ID
			}
			if want, ok := pids[in.ID]; !ok || want != in.PID {
				return fmt.Sprintf("container %s: pid %d, before %d (restarted?)", in.ID, in.PID, want)
			}
		}
		if len(ids) != len(pids) {
			return fmt.Sprintf("containers now %v, before %v", ids, pids)
		}
		return ""
	}, 40*time.Second)
}

// TestBadPodsAreReportedAndOthersRun: each fault gives a reason and an
// event naming it, and a good pod on the same node runs regardless.
func TestBadPodsAreReportedAndOthersRun(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.cidr = fmt.Sprintf("10.205.%d.0/29", (os.Getpid()%30)*8) // 5 addresses for pods
	nd.start()
	taken, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	pod := func(name, image, cmd, extra string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: %s\n    imagePullPolicy: Never\n    command: %s\n%s", name, image, cmd, extra)
	}
	sleeper := `[sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]`
	nd.write("good.yaml", pod("good", testimages.BusyboxRef, sleeper, ""))
	nd.write("noimage.yaml", pod("noimage", "keelson.test/missing:1", sleeper, ""))
	nd.write("nocmd.yaml", pod("nocmd", testimages.BusyboxRef, "[/no/such/binary]", ""))
	nd.write("port.yaml", pod("port", testimages.BusyboxRef, sleeper, fmt.Sprintf("    ports: [{containerPort: 80, hostPort: %d}]\n", port)))
	nd.waitState("good", "c", 30*time.Second, running)

	waiting := func(reason string) func(corev1.ContainerStatus) bool {
		return func(cs corev1.ContainerStatus) bool {
			return cs.State.Waiting != nil && cs.State.Waiting.Reason == reason
		}
	}
	cs := nd.waitState("noimage", "c", 30*time.Second, waiting("ErrImageNeverPull"))
	if !strings.Contains(cs.State.Waiting.Message, "keelson.test/missing:1") {
		t.Errorf("missing image message: %q", cs.State.Waiting.Message)
	}
	cs = nd.waitState("nocmd", "c", 30*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.State.Waiting != nil && (cs.State.Waiting.Reason == "CreateContainerError" || cs.State.Waiting.Reason == "RunContainerError")
	})
	if !strings.Contains(cs.State.Waiting.Message, "/no/such/binary") {
		t.Errorf("command not found message: %q", cs.State.Waiting.Message)
	}
	cs = nd.waitState("port", "c", 30*time.Second, waiting("ContainerCreating"))
	nd.waitFor("port conflict named", func() string {
		p := nd.pod("port")
		m := p.Status.ContainerStatuses[0].State.Waiting
		if m == nil || !strings.Contains(m.Message, fmt.Sprint(port)) {
			return fmt.Sprintf("waiting: %+v", m)
		}
		return ""
	}, 20*time.Second)

	// The pod CIDR has room for 5 pods: 3 are wired (good; noimage and
	// nocmd wait for a start; port never got an address), two more fill it
	// and the next one finds it exhausted.
	for _, name := range []string{"fill1", "fill2"} {
		nd.write(name+".yaml", pod(name, testimages.BusyboxRef, sleeper, ""))
		nd.waitState(name, "c", 30*time.Second, running)
	}
	nd.write("full.yaml", pod("full", testimages.BusyboxRef, sleeper, ""))
	nd.waitFor("CIDR exhaustion reported", func() string {
		p := nd.pod("full")
		if p == nil || len(p.Status.ContainerStatuses) == 0 {
			return "no status"
		}
		m := p.Status.ContainerStatuses[0].State.Waiting
		if m == nil || !strings.Contains(m.Message, "10.205.") {
			return fmt.Sprintf("waiting: %+v", m)
		}
		return ""
	}, 20*time.Second)
	ev, err := nd.st.Snapshot().Events(memdb.NewWatchSet(), "Pod/default/full")
	if err != nil || len(ev) == 0 || ev[0].Reason != "FailedCreatePodSandBox" {
		t.Errorf("events of the pod that got no address: %v %v", ev, err)
	}
	if p := nd.pod("good"); p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the good pod was disturbed: %+v", p.Status)
	}
}

// TestContainerdDiesUnderTheAgent: containerd killed with SIGKILL is
// restarted by its supervisor; running pods are not disturbed and the
// agent still sees their exits (a crash after that is restarted).
func TestContainerdDiesUnderTheAgent(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("app.yaml", `apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
`)
	before := nd.waitState("steady", "app", 30*time.Second, running)
	pid := nd.daemon.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nd.waitFor("containerd restarted", func() string {
		if p := nd.daemon.PID(); p == pid || p == 0 {
			return fmt.Sprintf("pid %d", p)
		}
		return ""
	}, 30*time.Second)
	ip := nd.pod("steady").Status.PodIP
	nd.waitFor("pod still serving", func() string {
		body, err := httpGet("http://" + ip + ":8080/hostname")
		if err != nil || strings.TrimSpace(body) != "steady" {
			return fmt.Sprintf("%q %v", body, err)
		}
		return ""
	}, 10*time.Second)
	if cs := nd.pod("steady").Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.ContainerID != before.ContainerID {
		t.Fatalf("containerd's restart disturbed the container: %+v", cs)
	}
	// The agent still follows the container: a crash now is restarted.
	_, _ = httpGet("http://" + ip + ":8080/crash?code=3")
	nd.waitState("steady", "app", 60*time.Second, func(cs corev1.ContainerStatus) bool { return cs.RestartCount >= 1 && cs.State.Running != nil })
}
