package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/network"
)

// agentProc is `keelson agent` running as its own process (the test binary
// re-executed), so that it can be killed with SIGKILL.
type agentProc struct {
	cmd    *exec.Cmd
	server string
}

func startAgentProc(t *testing.T, args ...string) *agentProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], append([]string{"agent", "--listen", addr}, args...)...)
	cmd.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
	logf, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("agent log:\n%s", b)
		}
	})
	return &agentProc{cmd: cmd, server: "http://" + addr}
}

func (a *agentProc) kill9() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
}

func (a *agentProc) stop() {
	_ = a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		a.kill9()
	}
}

const webPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: app
    image: keelson.test/testapp:1
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
`

func TestAgentCommandSurvivesKill9(t *testing.T) {
	gittest.RequireRoot(t, "runs containers with containerd")
	dataDir, err := os.MkdirTemp("", "ka") // short: containerd's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	manifests := t.TempDir()
	testimages.Build(t, filepath.Join(dataDir, "images"))
	node := fmt.Sprintf("cli-agent-%d", os.Getpid()%10000)
	t.Cleanup(func() { _ = network.RemoveNode(network.Config{Node: node}) })
	args := []string{"--name", node, "--data-dir", dataDir, "--pod-manifests", manifests,
		"--pod-cidr", fmt.Sprintf("10.203.%d.0/24", os.Getpid()%250), "--log-level", "debug"}
	if err := os.WriteFile(filepath.Join(manifests, "web.yaml"), []byte(webPod), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgentProc(t, args...)
	t.Cleanup(func() {
		// Remove the pod, then stop the agent (which stops its containerd).
		_ = os.Remove(filepath.Join(manifests, "web.yaml"))
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			_, out, _ := cli(t, "get", "pods", "--server", a.server)
			if !strings.Contains(out, "web") && !strings.Contains(out, "tools") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		a.stop()
	})

	var ip, containerID string
	eventually(t, "pod running", func() string {
		code, out, errOut := cli(t, "get", "pods", "-o", "wide", "--server", a.server)
		if code != 0 || !strings.Contains(out, "Running") || !strings.Contains(out, "1/1") {
			return fmt.Sprintf("%d %s %s", code, out, errOut)
		}
		return ""
	})
	_, out, _ := cli(t, "get", "pod", "web", "-o", "json", "--server", a.server)
	ip = jsonField(out, `"podIP": "`)
	containerID = jsonField(out, `"containerID": "`)
	if ip == "" || containerID == "" {
		t.Fatalf("no pod IP or container ID in:\n%s", out)
	}
	// Running means started, not yet listening: the app may need a moment.
	eventually(t, "pod answers", func() string {
		body, err := get("http://" + ip + ":8080/hostname")
		if err != nil || strings.TrimSpace(body) != "web" {
			return fmt.Sprintf("%q %v", body, err)
		}
		return ""
	})
	eventually(t, "logs show the request", func() string {
		code, out, errOut := cli(t, "logs", "web", "--server", a.server)
		if code != 0 || !strings.Contains(out, "/hostname") {
			return fmt.Sprintf("%d %q %s", code, out, errOut)
		}
		return ""
	})
	code, out, _ := cli(t, "describe", "pod", "web", "--server", a.server)
	if code != 0 || !strings.Contains(out, "Started") || !strings.Contains(out, "State: Running") {
		t.Errorf("describe pod:\n%s", out)
	}
	for _, args := range [][]string{{"get", "events"}, {"get", "events", "pod/web"}, {"get", "ev", "-A"}} {
		code, out, errOut := cli(t, append(args, "--server", a.server)...)
		if code != 0 || !strings.Contains(out, "LAST SEEN") || !strings.Contains(out, "Pod/default/web") || !strings.Contains(out, "Started") {
			t.Errorf("%v: %d\n%s%s", args, code, out, errOut)
		}
	}
	if code, out, _ := cli(t, "get", "events", "-n", "elsewhere", "--server", a.server); code != 0 || strings.Contains(out, "Pod/default/web") {
		t.Errorf("get events -n elsewhere shows the default namespace's: %d\n%s", code, out)
	}

	// exec: output, stdin and the exit code come back as kubectl exec's do.
	tools := "apiVersion: v1\nkind: Pod\nmetadata: {name: tools}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: sh, image: 'keelson.test/busybox:1', imagePullPolicy: Never, command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]}\n"
	if err := os.WriteFile(filepath.Join(manifests, "tools.yaml"), []byte(tools), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(manifests, "tools.yaml")) })
	eventually(t, "tools running", func() string {
		code, out, _ := cli(t, "get", "pods", "--server", a.server)
		if code != 0 || !strings.Contains(out, "tools") || strings.Count(out, "Running") != 2 {
			return out
		}
		return ""
	})
	if code, out, errOut := cli(t, "exec", "tools", "--server", a.server, "--", "hostname"); code != 0 || strings.TrimSpace(out) != "tools" {
		t.Errorf("exec hostname: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, "exec", "tools", "--server", a.server, "--", "sh", "-c", "echo oops >&2; exit 5"); code != 5 || !strings.Contains(errOut, "oops") {
		t.Errorf("exec exit code: %d, stderr %q; want 5 and oops", code, errOut)
	}
	var out2, err2 bytes.Buffer
	root := newRoot(&out2, &err2)
	root.SetIn(strings.NewReader("line one\nline two\n"))
	root.SetArgs([]string{"exec", "-i", "tools", "--server", a.server, "--", "wc", "-l"})
	if err := root.ExecuteContext(context.Background()); err != nil || strings.TrimSpace(out2.String()) != "2" {
		t.Errorf("exec -i wc -l: %v %q %q", err, out2.String(), err2.String())
	}
	// -it from input that is not a terminal, as kubectl: a word on stderr,
	// and the command runs without a terminal, what is piped goes to it
	// and its exit code comes back. (The terminal itself is tested in
	// nodeagent/runtime's TestExecTTY.)
	out2.Reset()
	err2.Reset()
	root = newRoot(&out2, &err2)
	root.SetIn(strings.NewReader("echo typed-$((40+2)); test -t 0 || echo no-tty\nexit 3\n"))
	root.SetArgs([]string{"exec", "-it", "tools", "--server", a.server, "--", "sh"})
	if err := root.ExecuteContext(context.Background()); exitCode(err) != 3 || strings.TrimSpace(out2.String()) != "typed-42\nno-tty" ||
		!strings.Contains(err2.String(), "Unable to use a TTY") {
		t.Errorf("exec -it sh: %v (exit %d) %q %q", err, exitCode(err), out2.String(), err2.String())
	}
	if code, _, errOut := cli(t, "exec", "web", "-c", "nope", "--server", a.server, "--", "true"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("exec in a missing container: %d %q", code, errOut)
	}

	// kill -9: the container keeps running and a new agent adopts it.
	pidBefore := taskPID(t, dataDir, containerID)
	a.kill9()
	if body, err := get("http://" + ip + ":8080/hostname"); err != nil || strings.TrimSpace(body) != "web" {
		t.Fatalf("pod stopped answering when the agent died: %q %v", body, err)
	}
	a = startAgentProc(t, args...)
	eventually(t, "pod adopted", func() string {
		_, out, _ := cli(t, "get", "pod", "web", "-o", "json", "--server", a.server)
		if jsonField(out, `"containerID": "`) != containerID || jsonField(out, `"podIP": "`) != ip || !strings.Contains(out, `"running"`) {
			return "after restart:\n" + out
		}
		if strings.Contains(out, `"restartCount": 1`) {
			return "restarted"
		}
		return ""
	})
	if pid := taskPID(t, dataDir, containerID); pid != pidBefore {
		t.Errorf("the container's process is %s after the agent's kill -9 and return, was %s", pid, pidBefore)
	}
}

// taskPID is the host PID of a container's task, as Debian's ctr lists it
// on the agent's containerd.
func taskPID(t *testing.T, dataDir, containerID string) string {
	t.Helper()
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := exec.Command("ctr", "--address", filepath.Join(dataDir, "containerd", "containerd.sock"), "-n", "keelson", "task", "ls").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr task ls: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
			return f[1]
		}
	}
	t.Fatalf("no task %s in:\n%s", id, out)
	return ""
}

func jsonField(s, prefix string) string {
	_, rest, ok := strings.Cut(s, prefix)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
