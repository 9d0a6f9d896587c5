package nodeagent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/syncbuf"
	"github.com/keelson/keelson/nodeagent/network"
	"github.com/keelson/keelson/nodeagent/runtime"
)

// leftovers lists what is left on the node of the pod with uid: its
// containers, active snapshots, mounts, veths on the node's bridge and
// host-local IP allocations. It is what the runtime and network tests check
// after a Remove or a Teardown, for a whole pod.
func (nd *node) leftovers(uid string) []string {
	nd.t.Helper()
	ctx := context.Background()
	var out []string
	infos, err := nd.rt.List(ctx)
	if err != nil {
		nd.t.Fatal(err)
	}
	for _, in := range infos {
		if in.Labels[runtime.LabelPodUID] == uid || strings.Contains(in.ID, uid) {
			out = append(out, "container "+in.ID)
		}
	}
	sctx := namespaces.WithNamespace(ctx, "keelson")
	err = nd.rt.Client().SnapshotService(runtime.DefaultSnapshotter).Walk(sctx, func(_ context.Context, si snapshots.Info) error {
		// Image layers are committed snapshots; a container's is active.
		if si.Kind == snapshots.KindActive || strings.Contains(si.Name, uid) {
			out = append(out, fmt.Sprintf("snapshot %s (%v)", si.Name, si.Kind))
		}
		return nil
	})
	if err != nil {
		nd.t.Fatal(err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, uid) {
			out = append(out, "mount "+l)
		}
	}
	brif, _ := os.ReadDir(filepath.Join("/sys/class/net", network.DefaultBridgeName(nd.name), "brif"))
	for _, e := range brif {
		out = append(out, "veth "+e.Name())
	}
	ipam, _ := os.ReadDir(filepath.Join(nd.dataDir, "network", "cni", "ipam", "keelson"))
	for _, e := range ipam {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, "IP allocation "+e.Name())
		}
	}
	return out
}

// waitGone waits until pod name is no longer in the store, then checks that
// nothing of the pod with uid is left.
func (nd *node) waitGone(name, uid string) {
	nd.t.Helper()
	nd.waitFor(name+" removed", func() string {
		if nd.pod(name) != nil {
			return "still there"
		}
		return ""
	}, 60*time.Second)
	if l := nd.leftovers(uid); len(l) > 0 {
		nd.t.Errorf("left behind by pod %s (%s):\n%s", name, uid, strings.Join(l, "\n"))
	}
}

func (nd *node) remove(file string) {
	nd.t.Helper()
	if err := os.Remove(filepath.Join(nd.manifests, file)); err != nil {
		nd.t.Fatal(err)
	}
}

func (nd *node) waitPhase(pod string, phase corev1.PodPhase, timeout time.Duration) {
	nd.t.Helper()
	nd.waitFor(pod+" phase "+string(phase), func() string {
		p := nd.pod(pod)
		if p == nil {
			return "no pod"
		}
		if p.Status.Phase != phase {
			return string(p.Status.Phase)
		}
		return ""
	}, timeout)
}

func TestHostNetworkPod(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	port := freePort(t)
	nd.write("hn.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hn}
spec:
  hostNetwork: true
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    env: [{name: PORT, value: "%d"}]
  - name: links
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /proc/net/dev; sleep 3600"]
`, port))
	nd.waitState("hn", "app", 30*time.Second, running)
	nd.waitState("hn", "links", 30*time.Second, running)
	host, _ := os.Hostname()
	nd.waitFor("app listens on the node's 127.0.0.1 and has the node's hostname", func() string {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/hostname", port))
		if err != nil || strings.TrimSpace(body) != host {
			return fmt.Sprintf("%q %v, want %q", body, err, host)
		}
		return ""
	}, 10*time.Second)
	// The container sees the node's interfaces, not a lone lo and eth0.
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && !strings.HasPrefix(i.Name, "veth") {
			want = append(want, i.Name)
		}
	}
	nd.waitFor("container lists the node's interfaces", func() string {
		l := nd.logs("hn", "links", false)
		for _, name := range want {
			if !strings.Contains(l, name+":") {
				return fmt.Sprintf("no %s in:\n%s", name, l)
			}
		}
		return ""
	}, 10*time.Second)
	p := nd.pod("hn")
	if p.Status.PodIP != "127.0.0.1" || p.Status.HostIP != "127.0.0.1" {
		t.Errorf("pod IP %q host IP %q, want the host's 127.0.0.1", p.Status.PodIP, p.Status.HostIP)
	}
	if sbs, _ := nd.net.Sandboxes(); len(sbs) > 0 {
		t.Errorf("sandboxes for a host-network pod: %+v", sbs)
	}
	uid := string(p.UID)
	for _, l := range nd.leftovers(uid) {
		if strings.HasPrefix(l, "veth ") || strings.HasPrefix(l, "IP allocation ") {
			t.Errorf("host-network pod has a %s", l)
		}
	}
	nd.remove("hn.yaml")
	nd.waitGone("hn", uid)
	if _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/hostname", port)); err == nil {
		t.Errorf("port %d still answers after the pod was removed", port)
	}
}

func TestEditedManifestReplacesPod(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: ed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    env: [{name: VALUE, value: %s}]
    command: ["sh", "-c", "echo %s $VALUE; exec sleep 3600"]
`
	nd.write("ed.yaml", fmt.Sprintf(manifest, "one", "first"))
	nd.waitState("ed", "c", 30*time.Second, running)
	nd.waitFor("first log", func() string {
		if l := nd.logs("ed", "c", false); !strings.Contains(l, "first one") {
			return l
		}
		return ""
	}, 10*time.Second)
	old := nd.pod("ed")
	oldUID, oldID := string(old.UID), old.Status.ContainerStatuses[0].ContainerID

	nd.write("ed.yaml", fmt.Sprintf(manifest, "two", "second"))
	nd.waitFor("the new pod runs the new spec", func() string {
		p := nd.pod("ed")
		if p == nil || string(p.UID) == oldUID {
			return "old pod"
		}
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Running == nil {
			return fmt.Sprintf("statuses %+v", cs)
		}
		if l := nd.logs("ed", "c", false); !strings.Contains(l, "second two") {
			return "log: " + l
		}
		return ""
	}, 30*time.Second)
	nd.waitFor("the old container is gone", func() string {
		if l := nd.leftoverContainers(oldUID); len(l) > 0 {
			return strings.Join(l, ", ")
		}
		return ""
	}, 30*time.Second)
	// Once the old pod is gone, the new one is still shown, as running.
	time.Sleep(time.Second)
	p := nd.pod("ed")
	if p == nil {
		t.Fatal("pod ed vanished from the store when its old version was removed")
	}
	if string(p.UID) == oldUID || p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].ContainerID == oldID {
		t.Errorf("after the edit: UID %s (old %s), phase %s, container %s (old %s)", p.UID, oldUID, p.Status.Phase, p.Status.ContainerStatuses[0].ContainerID, oldID)
	}
}

// leftoverContainers lists the containers of the pod with uid.
func (nd *node) leftoverContainers(uid string) []string {
	infos, err := nd.rt.List(context.Background())
	if err != nil {
		nd.t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		if in.Labels[runtime.LabelPodUID] == uid {
			out = append(out, in.ID)
		}
	}
	return out
}

func TestRestartPolicies(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	pod := `apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: %s
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "exit %d"]
`
	nd.write("ok.yaml", fmt.Sprintf(pod, "onfailure-ok", "OnFailure", 0))
	nd.write("fail.yaml", fmt.Sprintf(pod, "onfailure-fail", "OnFailure", 1))
	nd.write("never.yaml", fmt.Sprintf(pod, "never-fail", "Never", 7))

	nd.waitPhase("onfailure-ok", corev1.PodSucceeded, 30*time.Second)
	nd.waitState("onfailure-fail", "c", 30*time.Second, func(cs corev1.ContainerStatus) bool { return cs.RestartCount >= 1 })
	nd.waitPhase("never-fail", corev1.PodFailed, 30*time.Second)
	// Time for a wrong restart to happen (the first one is at once).
	time.Sleep(2 * time.Second)

	ok := nd.pod("onfailure-ok")
	if cs := ok.Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("OnFailure, exit 0: restarts %d, state %+v; want Completed, not restarted", cs.RestartCount, cs.State)
	}
	if ok.Status.Phase != corev1.PodSucceeded {
		t.Errorf("OnFailure, exit 0: phase %s, want Succeeded", ok.Status.Phase)
	}
	fail := nd.pod("onfailure-fail")
	if cs := fail.Status.ContainerStatuses[0]; cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 || cs.LastTerminationState.Terminated.Reason != "Error" {
		t.Errorf("OnFailure, exit 1: last state %+v, want Error 1", cs.LastTerminationState)
	}
	if fail.Status.Phase != corev1.PodRunning {
		t.Errorf("OnFailure, exit 1: phase %s, want Running (restarting)", fail.Status.Phase)
	}
	never := nd.pod("never-fail")
	if cs := never.Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.Reason != "Error" || cs.State.Terminated.ExitCode != 7 {
		t.Errorf("Never, exit 7: restarts %d, state %+v; want Error 7, not restarted", cs.RestartCount, cs.State)
	}
}

// syncBuffer collects output that is read while it is written.
type syncBuffer = syncbuf.Buffer

func TestLogsTailAndFollow(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("lg.yaml", `apiVersion: v1
kind: Pod
metadata: {name: lg}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: counted
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "seq 1 100; exec sleep 3600"]
  - name: ticker
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
`)
	nd.waitState("lg", "counted", 30*time.Second, running)
	nd.waitState("lg", "ticker", 30*time.Second, running)
	nd.waitFor("all lines written", func() string {
		if l := nd.logs("lg", "counted", false); !strings.HasSuffix(l, "\n100\n") {
			return l
		}
		return ""
	}, 10*time.Second)
	p := nd.pod("lg")
	for _, tc := range []struct {
		tail int
		want string
	}{
		{3, "98\n99\n100\n"},
		{1, "100\n"},
		{0, ""},
	} {
		var b strings.Builder
		if err := nd.agent.Logs(context.Background(), p, LogOptions{Container: "counted", Tail: tc.tail}, &b); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("Tail %d: %q, want %q", tc.tail, b.String(), tc.want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- nd.agent.Logs(ctx, p, LogOptions{Container: "ticker", Tail: 0, Follow: true}, &out) }()
	nd.waitFor("three followed lines", func() string {
		if n := strings.Count(out.String(), "tick "); n < 3 {
			return fmt.Sprintf("%d lines: %q", n, out.String())
		}
		return ""
	}, 10*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after cancel")
	}
	// Followed lines are whole and consecutive.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var first int
	fmt.Sscanf(lines[0], "tick %d", &first)
	for i, l := range lines {
		if l != fmt.Sprintf("tick %d", first+i) {
			t.Errorf("followed line %d: %q, want tick %d (all: %q)", i, l, first+i, lines)
			break
		}
	}
}

func TestLogRotation(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	const maxBytes, maxFiles = 64 << 10, 3
	nd.configure = func(a *Agent) {
		if a.logRotation.maxBytes != 10<<20 || a.logRotation.maxFiles != 5 {
			t.Errorf("default rotation %+v, want 10 MiB and 5 files", a.logRotation)
		}
		a.logRotation = logRotation{maxBytes: maxBytes, maxFiles: maxFiles, checkEvery: 50 * time.Millisecond}
	}
	nd.start()
	// About 1 MiB in bursts of 30 KiB, then a last line.
	nd.write("rot.yaml", `apiVersion: v1
kind: Pod
metadata: {name: rot}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "for i in $(seq 1 35); do seq 1 5000 | sed \"s/^/burst $i line /\" ; sleep 0.1; done; echo last line; exec sleep 3600"]
`)
	nd.waitState("rot", "c", 30*time.Second, running)
	nd.waitFor("last line logged", func() string {
		p := nd.pod("rot")
		var b strings.Builder
		_ = nd.agent.Logs(context.Background(), p, LogOptions{Container: "c", Tail: 1}, &b)
		if b.String() != "last line\n" {
			return fmt.Sprintf("tail: %q", b.String())
		}
		return ""
	}, 30*time.Second)
	time.Sleep(200 * time.Millisecond) // a last rotation check
	p := nd.pod("rot")
	dir := filepath.Join(nd.agent.podDir(p), "logs", "c")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !strings.Contains(strings.Join(names, " "), "0.log.1") {
		t.Errorf("no rotated file in %v", names)
	}
	if len(names) > maxFiles {
		t.Errorf("%d log files %v, want at most %d (the current one included, as kubelet's containerLogMaxFiles)", len(names), names, maxFiles)
	}
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && n != "0.log" && fi.Size() < maxBytes {
			t.Errorf("rotated file %s has %d bytes, less than %d", n, fi.Size(), maxBytes)
		}
	}
	// All of it still reads: the last line, and older lines in order before it.
	var all strings.Builder
	if err := nd.agent.Logs(context.Background(), p, LogOptions{Container: "c", Tail: -1}, &all); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(all.String(), "burst 35 line 5000\nlast line\n") || all.Len() < 2*maxBytes {
		t.Errorf("all logs: %d bytes ending %q", all.Len(), all.String()[max(0, all.Len()-60):])
	}
	var tail strings.Builder
	if err := nd.agent.Logs(context.Background(), p, LogOptions{Container: "c", Tail: 2}, &tail); err != nil {
		t.Fatal(err)
	}
	if tail.String() != "burst 35 line 5000\nlast line\n" {
		t.Errorf("Tail 2: %q", tail.String())
	}
}

func TestDeletedPodLeavesNothing(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("del.yaml", `apiVersion: v1
kind: Pod
metadata: {name: del}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "echo init > /work/init"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
  - name: side
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /work/init; exec sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - name: work
    emptyDir: {}
`)
	nd.waitState("del", "app", 30*time.Second, running)
	nd.waitState("del", "side", 30*time.Second, running)
	p := nd.pod("del")
	uid := string(p.UID)
	if l := nd.leftovers(uid); len(l) == 0 {
		t.Fatal("leftovers finds nothing of a running pod: the check would prove nothing")
	}
	nd.remove("del.yaml")
	nd.waitGone("del", uid)
}
