package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/imagebuild"
	"github.com/keelson/keelson/nodeagent/network"
)

// TestUpRunsTheGuestbookAndDownRemovesIt runs `keelson up` as a user of
// the README does, as its own process, on a repository holding a copy of
// examples/guestbook: the guestbook runs and answers through its Service
// (web → kv by DNS name and ClusterIP); a commit scaling web to 5 and its
// `git revert` are followed; Ctrl-C stops Keelson and leaves the
// containers running and serving; `keelson down` then leaves nothing of
// the node behind but the image archive.
func TestUpRunsTheGuestbookAndDownRemovesIt(t *testing.T) {
	gittest.RequireRoot(t, "runs containers, pod networks and BPF programs")
	id := os.Getpid() % 10000
	node := fmt.Sprintf("up-%d", id)
	// Pod and service addresses of its own (see the other tests' choices),
	// so that it runs beside the package's other tests and `keelson up` of
	// the benchmarks (10.244.0.0/16).
	clusterCIDR := fmt.Sprintf("10.%d.0.0/16", 100+(id+43)%50)
	podPrefix := fmt.Sprintf("10.%d.0.", 100+(id+43)%50) // the node's /24, the first
	serviceCIDR := fmt.Sprintf("10.%d.0.0/16", 150+(id+43)%50)
	// Short: containerd's socket path under it is length-limited.
	dataDir, err := os.MkdirTemp("", "ku")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	archive := filepath.Join(dataDir, "images", "guestbook.tar")
	buildGuestbookImage(t, archive)

	repo := gittest.NewRepo(t, "", "deploy")
	copyDir(t, filepath.Join("..", "..", "examples", "guestbook"), filepath.Join(repo.Dir, "guestbook"))
	repo.Commit("guestbook")
	webYAML, err := os.ReadFile(filepath.Join(repo.Dir, "guestbook", "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	ctlAddr, agentAddr := freeAddr(t), freeAddr(t)
	up := startUp(t, "up", "--repo", repo.Dir, "--path", "guestbook", "--data-dir", dataDir,
		"--listen", ctlAddr, "--agent-listen", agentAddr, "--node-name", node,
		"--cluster-cidr", clusterCIDR, "--service-cidr", serviceCIDR,
		"--ingress-http-port", "0", "--log-level", "debug")
	downDone := false
	t.Cleanup(func() {
		up.kill()
		if !downDone {
			_ = runDown(context.Background(), dataDir, node, io.Discard)
		}
		_ = network.RemoveNode(network.Config{Node: node})
		_ = ebpf.Unpin(ebpf.Config{Node: node})
	})

	// What up prints: where its API is, what it runs.
	waitFor(t, time.Minute, "up says it is up", func() string {
		if up.exited() {
			return "up exited: " + up.stdout()
		}
		if out := up.stdout(); !strings.Contains(out, "Keelson is up") {
			return "stdout: " + out
		}
		return ""
	})
	wantOut := fmt.Sprintf("Keelson is up: the cluster API is http://%s (the node's is http://%s).\n", ctlAddr, agentAddr)
	if out := up.stdout(); !strings.HasPrefix(out, wantOut) ||
		!strings.Contains(out, fmt.Sprintf("It runs %s (path guestbook) on node %s; images are imported from %s.\n", repo.Dir, node, filepath.Join(dataDir, "images"))) {
		t.Fatalf("up's stdout:\n%s\nwant it to begin with:\n%s", out, wantOut)
	}
	server := "http://" + ctlAddr
	c, _ := client.New(server)
	agent, _ := client.New("http://" + agentAddr)

	// The guestbook runs: 3 web pods and the kv pod, all Running and Ready.
	var web []corev1.Pod
	running := func(webReplicas int) func() string {
		return func() string {
			l, err := c.Pods(context.Background(), client.PodQuery{Namespace: "guestbook"})
			if err != nil {
				return err.Error()
			}
			web = web[:0]
			kv := 0
			for _, p := range l.Items {
				if p.Status.Phase != corev1.PodRunning || !podReady(p) || p.DeletionTimestamp != nil {
					return fmt.Sprintf("pod %s is %s (ready %t)", p.Name, p.Status.Phase, podReady(p))
				}
				switch p.Labels["tier"] {
				case "web":
					web = append(web, p)
				case "kv":
					kv++
				}
			}
			if len(web) != webReplicas || kv != 1 || len(l.Items) != webReplicas+1 {
				return fmt.Sprintf("%d pods: %d web, %d kv Running and Ready; want %d web, 1 kv", len(l.Items), len(web), kv, webReplicas)
			}
			return ""
		}
	}
	waitFor(t, 3*time.Minute, "3 web pods and 1 kv pod Running", running(3))
	for _, p := range web {
		if p.Spec.NodeName != node || !strings.HasPrefix(p.Status.PodIP, podPrefix) {
			t.Errorf("pod %s: node %q, IP %q; want node %s, an IP of %s0/24", p.Name, p.Spec.NodeName, p.Status.PodIP, node, podPrefix)
		}
	}
	if code, out, errOut := cli(t, "get", "pods", "-n", "guestbook", "-o", "wide", "--server", server); code != 0 || strings.Count(out, "Running") != 4 {
		t.Errorf("keelson get pods -n guestbook -o wide: exit %d\n%s%s", code, out, errOut)
	}

	// End to end, from the host through the web Service's ClusterIP (the
	// eBPF socket load balancer): sign the book, read it back through
	// every web pod, each of which reaches kv by its DNS name.
	clusterIP := serviceIP(t, c, "web")
	webAddr := net.JoinHostPort(clusterIP, "80")
	entry := fmt.Sprintf("signed by the up test %d", id)
	waitFor(t, 30*time.Second, "sign the guestbook through the Service", func() string {
		page, err := httpDo(http.MethodPost, "http://"+webAddr+"/sign", url.Values{"entry": {entry}})
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(page, "<li>"+entry+"</li>") || !strings.Contains(page, "Hello from Keelson") {
			return "the page after signing lacks the entry or the greeting:\n" + page
		}
		return ""
	})
	for _, p := range web {
		page, err := httpDo(http.MethodGet, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", nil)
		if err != nil {
			t.Fatalf("pod %s: %v", p.Name, err)
		}
		if !strings.Contains(page, "Served by <b>"+p.Name+"</b>") || !strings.Contains(page, "<li>"+entry+"</li>") {
			t.Errorf("pod %s does not serve the signed book:\n%s", p.Name, page)
		}
	}

	// The README's walkthrough: 5 replicas by a commit, back to 3 by git revert.
	repo.WriteFile("guestbook/web.yaml", strings.Replace(string(webYAML), "replicas: 3", "replicas: 5", 1))
	scaled := repo.Commit("guestbook: 5 web replicas")
	waitFor(t, 2*time.Minute, "5 web pods Running", running(5))
	statusApplied(t, server, scaled)
	repo.Git("revert", "--no-edit", "HEAD")
	reverted := repo.Head()
	waitFor(t, 2*time.Minute, "back to 3 web pods", running(3))
	statusApplied(t, server, reverted)
	// The node has stopped the two removed pods, too.
	waitFor(t, time.Minute, "the node runs 4 pods", func() string {
		l, err := agent.Pods(context.Background(), client.PodQuery{})
		if err != nil {
			return err.Error()
		}
		if len(l.Items) != 4 {
			return fmt.Sprintf("%d pods on the node", len(l.Items))
		}
		return ""
	})

	// Ctrl-C stops Keelson, promptly (within 10 s, containerd's own
	// SIGTERM-to-SIGKILL grace) and with exit status 0, and leaves the
	// containers running: their processes live on and serve, by pod IP and
	// by ClusterIP (the programs stay pinned), with nothing of Keelson's
	// (nor its private containerd) running.
	socket := filepath.Join(dataDir, "agent", "containerd", "containerd.sock")
	tasks := ctrTasks(t, socket)
	if len(tasks) != 4 {
		t.Fatalf("containerd runs %d tasks, want 4: %v", len(tasks), tasks)
	}
	t0 := time.Now()
	code, err := up.interrupt(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("up after Ctrl-C: exit %d, %v", code, err)
	}
	t.Logf("up stopped %v after Ctrl-C", time.Since(t0).Round(time.Millisecond))
	for task, pid := range tasks {
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !bytes.Contains(cmdline, []byte("guestbook")) {
			t.Errorf("after Ctrl-C, the process %d of container %s is gone (%v, %q)", pid, task, err, cmdline)
		}
	}
	if procs := procsMentioning(filepath.Join(dataDir, "agent", "containerd", "config.toml")); len(procs) > 0 {
		t.Errorf("after Ctrl-C, up's containerd still runs: %v", procs)
	}
	for _, addr := range []string{net.JoinHostPort(web[0].Status.PodIP, "8080"), webAddr} {
		if out, err := httpDo(http.MethodGet, "http://"+addr+"/healthz", nil); err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("after Ctrl-C, GET http://%s/healthz: %q, %v", addr, out, err)
		}
	}

	// What the node holds now, which down must remove: each kind is there.
	before := nodeTraces(t, node, dataDir, podPrefix)
	for _, kind := range traceKinds {
		if len(before[kind]) == 0 {
			t.Errorf("after Ctrl-C, before down: no %s of the node (the check after down would prove nothing)", kind)
		}
	}

	// keelson down removes everything up started.
	down := exec.Command(os.Args[0], "down", "--data-dir", dataDir, "--node-name", node)
	down.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
	out, err := down.CombinedOutput()
	downDone = err == nil
	if err != nil {
		t.Fatalf("keelson down: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Stopped and removed 4 container(s).") || !strings.Contains(string(out), "Removed 4 pod network(s).") {
		t.Errorf("keelson down printed:\n%s", out)
	}
	for task, pid := range tasks {
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte("guestbook")) {
			t.Errorf("after down, the process %d of container %s still runs", pid, task)
		}
	}
	after := nodeTraces(t, node, dataDir, podPrefix)
	for _, kind := range traceKinds {
		for _, what := range after[kind] {
			t.Errorf("after down, %s remain: %s", kind, what)
		}
	}
	for _, path := range []string{filepath.Join(dataDir, "controller"), filepath.Join(dataDir, "agent", "containerd")} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after down, %s is still there (%v)", path, err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dataDir, "agent")); len(left) > 0 {
		t.Errorf("after down, %s holds %v", filepath.Join(dataDir, "agent"), left)
	}
	if _, err := os.Stat(archive); err != nil {
		t.Errorf("down removed the image archive: %v", err)
	}
}

// traceKinds are the kinds of things nodeTraces looks for.
var traceKinds = []string{"processes", "network namespaces", "BPF pins", "bridges", "iptables chains", "routes", "mounts"}

// nodeTraces finds, by kind, what a node named node with data directory
// dataDir and pod addresses podPrefix* has on this machine: processes
// naming the data directory (containerd, shims), the pods' network
// namespaces and the BPF pins under /run/keelson/NODE and
// /sys/fs/bpf/keelson/NODE, the bridge, its masquerade chain, routes to the
// pods, and mounts under the data directory or the run directory.
func nodeTraces(t *testing.T, node, dataDir, podPrefix string) map[string][]string {
	t.Helper()
	found := map[string][]string{"processes": procsMentioning(dataDir + "/")}
	if entries, err := os.ReadDir(filepath.Join("/run/keelson", node, "netns")); err == nil {
		for _, e := range entries {
			found["network namespaces"] = append(found["network namespaces"], e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join("/run/keelson", node)); err == nil && len(found["network namespaces"]) == 0 {
		found["network namespaces"] = []string{filepath.Join("/run/keelson", node)}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/bpf/keelson", node)); err == nil {
		found["BPF pins"] = []string{filepath.Join("/sys/fs/bpf/keelson", node)}
	}
	bridge := network.DefaultBridgeName(node)
	if exec.Command("ip", "link", "show", bridge).Run() == nil {
		found["bridges"] = []string{bridge}
	}
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "KEELSON-MASQ-"+bridge) {
		found["iptables chains"] = []string{"KEELSON-MASQ-" + bridge}
	}
	if out, err = exec.Command("ip", "-4", "route", "show").CombinedOutput(); err != nil {
		t.Fatalf("ip route: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, podPrefix) {
			found["routes"] = append(found["routes"], line)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, dataDir+"/") || strings.Contains(line, dataDir+" ") || strings.Contains(line, "/run/keelson/"+node+"/") {
			found["mounts"] = append(found["mounts"], line)
		}
	}
	return found
}

// upProc is `keelson up` run as its own process (the test binary
// re-executed) in a process group of its own, as a shell runs a command,
// so that interrupt sends SIGINT to the group as Ctrl-C does.
type upProc struct {
	cmd              *exec.Cmd
	stdoutF, stderrF string
	done             chan struct{}
	waitErr          error
}

func startUp(t *testing.T, args ...string) *upProc {
	t.Helper()
	dir := t.TempDir()
	p := &upProc{stdoutF: filepath.Join(dir, "stdout"), stderrF: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	stdout, err := os.Create(p.stdoutF)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(p.stderrF)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.stderrF)
			t.Logf("up's stdout:\n%s\nup's stderr:\n%s", p.stdout(), b)
		}
	})
	return p
}

func (p *upProc) stdout() string {
	b, _ := os.ReadFile(p.stdoutF)
	return string(b)
}

func (p *upProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// interrupt sends SIGINT to the process group and waits up to d for the
// process to exit; it returns its exit code.
func (p *upProc) interrupt(d time.Duration) (int, error) {
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT); err != nil {
		return -1, err
	}
	select {
	case <-p.done:
	case <-time.After(d):
		return -1, fmt.Errorf("still running %v after SIGINT", d)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, p.waitErr
}

// kill stops the process, if it still runs, with SIGKILL.
func (p *upProc) kill() {
	if !p.exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitFor retries f until it returns "" or d has passed, as eventually
// does with a deadline fit for starting containers on a busy machine.
func waitFor(t *testing.T, d time.Duration, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, d, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildGuestbookImage writes the guestbook's image archive to path, as
// `make run` does with hack/imagebuild.
func buildGuestbookImage(t *testing.T, path string) {
	t.Helper()
	bin, err := imagebuild.GoBinary(filepath.Join("..", "..", "examples", "apps", "guestbook"))
	if err != nil {
		t.Fatal(err)
	}
	files := append(imagebuild.BaseFiles(), imagebuild.File{Name: "guestbook", Mode: 0o755, Data: bin})
	img, err := imagebuild.Image(files, v1.Config{
		Entrypoint:   []string{"/guestbook"},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		StopSignal:   "SIGTERM",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.WriteArchive("keelson.local/guestbook:dev", img, path); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of the directory src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// serviceIP is the ClusterIP of the Service name in the guestbook namespace.
func serviceIP(t *testing.T, c *client.Client, name string) string {
	t.Helper()
	l, err := c.Services(context.Background(), client.Query{Namespace: "guestbook"})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range l.Items {
		if it.Service.Name == name && it.Service.Spec.ClusterIP != "" {
			return it.Service.Spec.ClusterIP
		}
	}
	t.Fatalf("no Service %s with a ClusterIP in guestbook", name)
	return ""
}

// statusApplied checks that keelson status names sha as the applied commit.
func statusApplied(t *testing.T, server, sha string) {
	t.Helper()
	waitFor(t, 30*time.Second, "status shows "+sha[:12]+" applied", func() string {
		code, out, errOut := cli(t, "status", "--server", server)
		if code != 0 || !strings.Contains(out, "Applied:  "+sha[:12]) {
			return fmt.Sprintf("exit %d:\n%s%s", code, out, errOut)
		}
		return ""
	})
}

// httpDo makes one request on a new connection and returns the body of
// its (followed) answer; a status other than 200 is an error.
func httpDo(method, u string, form url.Values) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = c.PostForm(u, form)
	} else {
		resp, err = c.Get(u)
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, b)
	}
	return string(b), err
}

// ctrTasks lists containerd's tasks in the keelson namespace with ctr:
// task ID → PID, failing the test unless every one is RUNNING.
func ctrTasks(t *testing.T, socket string) map[string]int {
	t.Helper()
	out, err := exec.Command("ctr", "--address", socket, "-n", "keelson", "task", "ls").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr task ls: %v\n%s", err, out)
	}
	tasks := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		var id, status string
		var pid int
		if _, err := fmt.Sscan(line, &id, &pid, &status); err != nil || status != "RUNNING" {
			t.Fatalf("ctr task ls: %q: %v\n%s", line, err, out)
		}
		tasks[id] = pid
	}
	return tasks
}

// procsMentioning lists the processes whose command line contains s.
func procsMentioning(s string) []string {
	self := fmt.Sprint(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, e.Name()+": "+string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	return out
}
