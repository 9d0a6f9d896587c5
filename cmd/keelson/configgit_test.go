package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
)

const secretValue = "hunter2-q7Zx-never-shown"

// configApp is a Deployment that mounts a ConfigMap and a Secret and takes
// an environment variable from the Secret, with the ConfigMap at a greeting.
func configApp(greeting string) map[string]string {
	return map[string]string{
		"config.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  greeting: %s\n", greeting),
		"secret.yaml": fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData:\n  password: %s\n", secretValue),
		"app.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: cfg}}
  template:
    metadata: {labels: {app: cfg}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: '%s'
        imagePullPolicy: Never
        command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
        env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}]
        volumeMounts:
        - {name: settings, mountPath: /etc/settings}
        - {name: creds, mountPath: /etc/creds}
      volumes:
      - {name: settings, configMap: {name: settings}}
      - {name: creds, secret: {secretName: creds}}
`, testimages.BusyboxRef),
	}
}

// A ConfigMap changed in Git reaches the files of a running pod on another
// process's node, in place, without a restart; the Secret it mounts works
// and its value shows in no log, event, status or describe output.
func TestConfigFromGitReachesRunningPods(t *testing.T) {
	gittest.RequireRoot(t, "runs containers")
	repo := gittest.NewRepo(t, "", "config")
	repo.CommitFiles("app", configApp("hello-v1"))
	pc := startProcCluster(t, repo, fmt.Sprintf("cfg-%d", os.Getpid()%10000),
		append(cidrs(23), "--log-level", "debug"), []string{"--ingress-http-port", "0", "--log-level", "debug"})
	c, ctlAddr, ctl, agent := pc.c, pc.ctlAddr, pc.ctl, pc.agent
	var pod string
	eventually(t, "the pod running", func() string {
		l, err := c.Pods(context.Background(), client.PodQuery{})
		if err != nil || len(l.Items) != 1 || l.Items[0].Status.Phase != "Running" {
			return fmt.Sprintf("%v %v", l, err)
		}
		pod = l.Items[0].Name
		return ""
	})
	exec := func(args ...string) string {
		code, out, errOut := cli(t, append([]string{"exec", pod, "--server", "http://" + ctlAddr, "--"}, args...)...)
		if code != 0 {
			return fmt.Sprintf("exit %d: %s", code, errOut)
		}
		return strings.TrimSpace(out)
	}
	if got := exec("cat", "/etc/settings/greeting"); got != "hello-v1" {
		t.Fatalf("greeting %q, want hello-v1", got)
	}
	if got := exec("sh", "-c", "cat /etc/creds/password; echo; echo $PASSWORD"); got != secretValue+"\n"+secretValue {
		t.Errorf("the secret in the container: %q", got)
	}
	before := podSet(t, c)

	start := time.Now()
	repo.CommitFiles("greeting v2", configApp("hello-v2"))
	eventually(t, "the new greeting in the running pod", func() string {
		if got := exec("cat", "/etc/settings/greeting"); got != "hello-v2" {
			return got
		}
		return ""
	})
	t.Logf("ConfigMap change seen in the container %s after the commit", time.Since(start).Round(time.Millisecond))
	if after := podSet(t, c); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("the pod was replaced or restarted: %v, before %v", after, before)
	}

	// The Secret's value is nowhere users or logs see it.
	for _, args := range [][]string{
		{"describe", "pod", pod}, {"get", "pod", pod, "-o", "yaml"}, {"get", "secret", "creds", "-o", "json"},
		{"describe", "secret", "creds"}, {"get", "events", "-A"}, {"describe", "deploy", "app"},
	} {
		code, out, errOut := cli(t, append(args, "--server", "http://"+ctlAddr)...)
		if code != 0 {
			t.Errorf("%v: %d %s", args, code, errOut)
		}
		if strings.Contains(out+errOut, secretValue) {
			t.Errorf("%v shows the Secret's value", args)
		}
	}
	for name, p := range map[string]*proc{"controller": ctl, "agent": agent} {
		if b, _ := os.ReadFile(p.log); strings.Contains(string(b), secretValue) {
			t.Errorf("the %s's log (debug level) holds the Secret's value", name)
		}
	}
}
