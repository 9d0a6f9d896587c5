package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/syncbuf"
)

const webDeploy = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:v1
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
`

const shopNS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"

// cli runs the keelson CLI in-process and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// startController runs the controller on repo until the test ends and returns its API URL.
func startController(t *testing.T, repoURL, path string) string {
	t.Helper()
	return startControllerIn(t, repoURL, path, t.TempDir())
}

// startControllerIn is startController with the data directory dataDir
// (where it writes the agent token).
func startControllerIn(t *testing.T, repoURL, path, dataDir string) string {
	t.Helper()
	o := controllerOptions{
		dataDir:  dataDir,
		interval: time.Hour, // local sources are followed with fsnotify, not polling
	}
	o.src.URL, o.src.Path = repoURL, path
	return startControllerWith(t, o)
}

// startControllerWith runs the controller with o until the test ends and
// returns its API URL. It listens on a free port of 127.0.0.1 and logs at
// debug level; the data directory is a temporary one and the poll interval
// an hour unless o sets them.
func startControllerWith(t *testing.T, o controllerOptions) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	var wg sync.WaitGroup
	var logs syncBuffer
	o.listen, o.logLevel = "127.0.0.1:0", "debug"
	o.onListen = func(a string) { addr <- a }
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.interval == 0 {
		o.interval = time.Hour // tests trigger syncs, or follow local sources with fsnotify
	}
	wg.Go(func() {
		if err := runController(ctx, o, &logs); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not start listening")
		return ""
	}
}

// syncBuffer collects output that is read while it is written.
type syncBuffer = syncbuf.Buffer

var _ io.Writer = (*syncBuffer)(nil)

// eventually retries f until it returns "" or the deadline passes.
func eventually(t testing.TB, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestControllerFollowsCommitsAndRejectsBadOnes(t *testing.T) {
	repo := gittest.NewRepo(t, "", "deploy")
	good := repo.CommitFiles("add web", map[string]string{
		"apps/ns.yaml":  shopNS,
		"apps/web.yaml": webDeploy,
		"README.md":     "not a manifest, outside the path",
	})
	server := startController(t, repo.Dir, "apps")

	statusHas := func(subs ...string) func() string {
		return func() string {
			code, out, errOut := cli(t, "status", "--server", server)
			if code != 0 {
				return "status failed: " + errOut
			}
			for _, s := range subs {
				if !strings.Contains(out, s) {
					return "status lacks " + s + ":\n" + out
				}
			}
			return ""
		}
	}
	eventually(t, "first commit applied", statusHas("Applied:  "+good[:12], "Synced", "3 object(s)"))

	code, out, _ := cli(t, "get", "deploy", "-n", "shop", "--server", server)
	if code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "3") || !strings.Contains(out, good[:12]) {
		t.Fatalf("get deploy: %d\n%s", code, out)
	}
	code, out, _ = cli(t, "describe", "deploy", "web", "-n", "shop", "--server", server)
	if code != 0 || !strings.Contains(out, "Source:     web.yaml:1 (commit "+good[:12]+")") || !strings.Contains(out, "replicas: 3") {
		t.Fatalf("describe deploy: %d\n%s", code, out)
	}
	code, out, _ = cli(t, "get", "svc", "-A", "-o", "json", "--server", server)
	if code != 0 || !strings.Contains(out, `"kind": "List"`) || !strings.Contains(out, `"kind": "Service"`) {
		t.Fatalf("get svc -o json: %d\n%s", code, out)
	}

	// A bad commit is rejected whole: the image change in the same commit does not land.
	bad := repo.CommitFiles("break it", map[string]string{
		"apps/web.yaml": strings.Replace(webDeploy, "web:v1", "web:v2", 1),
		"apps/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: shop\ndata:\n  a: b\nspec: {}\n",
	})
	eventually(t, "bad commit rejected", statusHas("Rejected: "+bad[:12], "Applied:  "+good[:12], "bad.yaml:8: ConfigMap/shop/cfg: spec"))
	code, out, _ = cli(t, "get", "deploy", "web", "-n", "shop", "-o", "yaml", "--server", server)
	if code != 0 || !strings.Contains(out, "image: web:v1") {
		t.Fatalf("after a rejected commit the applied image changed: %d\n%s", code, out)
	}

	// The next good commit recovers by itself and prunes what it no longer has.
	repo.Remove("apps/bad.yaml")
	repo.WriteFile("apps/web.yaml", strings.SplitN(strings.Replace(webDeploy, "web:v1", "web:v2", 1), "---", 2)[0])
	fixed := repo.Commit("fix it, drop the service")
	eventually(t, "fix applied", statusHas("Applied:  "+fixed[:12], "Synced"))
	// The rejected commit is still shown with its errors, as older than the applied one.
	if _, st, _ := cli(t, "status", "--server", server); strings.Contains(st, "Rejected:") ||
		!strings.Contains(st, "Last failed commit (before the applied one): "+bad[:12]) ||
		!strings.Contains(st, "bad.yaml:8: ConfigMap/shop/cfg: spec") {
		t.Errorf("after a fix, status does not show the earlier rejection as such:\n%s", st)
	}
	code, _, errOut := cli(t, "get", "svc", "-n", "shop", "--server", server)
	if code != 0 || !strings.Contains(errOut, "No services found") {
		t.Errorf("service not pruned: %d %s", code, errOut)
	}

	// diff between the two good commits, and HEAD vs the working tree.
	code, out, errOut = cli(t, "diff", "--from", good, "--to", fixed, filepath.Join(repo.Dir, "apps"))
	if code != 0 {
		t.Fatalf("diff: %d %s", code, errOut)
	}
	for _, want := range []string{
		"~ Deployment/shop/web",
		`spec.template.spec.containers[0].image: "web:v1" -> "web:v2"`,
		"- Service/shop/web",
		"1 changed, 1 removed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	repo.WriteFile("apps/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: shop\n")
	code, out, _ = cli(t, "diff", "--exit-code", filepath.Join(repo.Dir, "apps"))
	if code != 2 || !strings.Contains(out, "+ ConfigMap/shop/extra") {
		t.Errorf("diff against the working tree: %d\n%s", code, out)
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(webDeploy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ns.yaml"), []byte(shopNS), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := cli(t, "validate", dir)
	if code != 0 || !strings.Contains(out, "3 object(s) valid") {
		t.Fatalf("validate good: %d %s", code, out)
	}
	bad := strings.Replace(webDeploy, "replicas: 3", "replicas: three", 1)
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "validate", dir)
	if code != 1 || !strings.Contains(errOut, "error: web.yaml:8: Deployment/shop/web: spec.replicas:") {
		t.Fatalf("validate bad: %d %s", code, errOut)
	}
	// The shared seed directories are checked by TestValidateSharedSeeds.
}

// seedDir returns the directory name of the project's seed manifests. The
// repository keeps a copy of them in testdata, so that CI, which clones the
// repository alone, runs the tests that use them; where the project's
// shared test data stands beside the repository (../shared/testdata), the
// copy must be the same.
func seedDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("testdata", name)
	shared := filepath.Join("..", "..", "..", "shared", "testdata", name)
	entries, err := os.ReadDir(shared)
	if errors.Is(err, fs.ErrNotExist) {
		return dir
	}
	if err != nil {
		t.Fatal(err)
	}
	copies, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != len(entries) {
		t.Errorf("%s has %d files, %s %d: copy the shared seeds into testdata again", dir, len(copies), shared, len(entries))
	}
	for _, e := range entries {
		want, err := os.ReadFile(filepath.Join(shared, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, e.Name())); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (%v): copy the shared seeds into testdata again", filepath.Join(dir, e.Name()), filepath.Join(shared, e.Name()), err)
		}
	}
	return dir
}

// TestValidateSharedSeeds runs keelson validate on the project's shared
// seed directories (seedDir), as their README says: every manifest of
// seed-manifests loads (the deprecated apps/v1beta1 Deployment with a
// warning saying what to change), and seed-manifests-bad is rejected with
// an error naming the file, the line and the field.
func TestValidateSharedSeeds(t *testing.T) {
	t.Run("seed-manifests", func(t *testing.T) {
		dir := seedDir(t, "seed-manifests")
		code, out, errOut := cli(t, "validate", dir)
		if code != 0 || !strings.Contains(out, "object(s) valid") || strings.Contains(errOut, "error:") {
			t.Fatalf("validate %s: exit %d\n%s%s", dir, code, out, errOut)
		}
		want := regexp.MustCompile(`(?m)^warning: [^:]+\.yaml:\d+: Deployment/\S+: apiVersion: apps/v1beta1 Deployment is deprecated: change apiVersion to apps/v1`)
		if !want.MatchString(errOut) {
			t.Errorf("validate %s: no warning saying what to change in the apps/v1beta1 Deployment:\n%s", dir, errOut)
		}
	})
	t.Run("seed-manifests-bad", func(t *testing.T) {
		dir := seedDir(t, "seed-manifests-bad")
		code, out, errOut := cli(t, "validate", dir)
		want := regexp.MustCompile(`(?m)^error: service-lb-placeholder-ip\.yaml:\d+: Service/\S+: spec\.loadBalancerIP: Invalid value: "X\.X\.X\.X"`)
		if code != 1 || !want.MatchString(errOut) {
			t.Errorf("validate %s: exit %d, want 1 with an error naming the file, line and field:\n%s%s", dir, code, out, errOut)
		}
	})
}

func TestCLIErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "widgets", "--server", "http://127.0.0.1:1"}, `unknown resource type "widgets"`},
		{[]string{"get", "pods", "-o", "toml", "--server", "http://127.0.0.1:1"}, `-o "toml"`},
		{[]string{"get", "pods", "-l", "a in ((", "--server", "http://127.0.0.1:1"}, `-l "a in (("`},
		{[]string{"status", "--server", "127.0.0.1:7676"}, "want http://HOST:PORT"},
		{[]string{"status", "--server", "http://127.0.0.1:1"}, "connection refused"},
		{[]string{"controller"}, `"repo" not set`},
		{[]string{"controller", "--repo", "/x", "--branch", "a", "--tag", "b"}, "branch"},
		{[]string{"controller", "--repo", "https://deploy:s3cret@git.example.com/team/deploy.git"}, "--password-file FILE, or in an environment variable and pass --password-env NAME"},
		{[]string{"controller", "--repo", "ssh://git:s3cret@git.example.com/team/deploy.git"}, "--ssh-key FILE"},
		{[]string{"up", "--repo", "https://deploy:s3cret@git.example.com/team/deploy.git"}, "credentials are never taken from flags"},
	}
	for _, tt := range tests {
		code, _, errOut := cli(t, tt.args...)
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", tt.args, code, errOut, tt.want)
		}
		if strings.Contains(errOut, "s3cret") {
			t.Errorf("%v: stderr shows the password: %q", tt.args, errOut)
		}
	}
}

func TestValidateSourceRefusesCredentialsInURL(t *testing.T) {
	tests := []struct {
		url     string
		wantErr []string // nil: valid
	}{
		{"https://git.example.com/team/deploy.git", nil},
		{"https://deploy@git.example.com/team/deploy.git", nil},
		{"git@git.example.com:team/deploy.git", nil},
		{"ssh://git@git.example.com/team/deploy.git", nil},
		{"/srv/git/deploy", nil},
		{"https://deploy:s3cret@git.example.com/team/deploy.git", []string{
			"--repo https://deploy:REDACTED@git.example.com/team/deploy.git: the URL carries a password or token",
			"--password-file", "--password-env", "--username",
		}},
		{"http://deploy:s3cret@127.0.0.1:8080/deploy.git", []string{"--password-file", "--password-env"}},
		{"ssh://git:s3cret@git.example.com/team/deploy.git", []string{"--ssh-key"}},
		{"git:s3cret@git.example.com:team/deploy.git", []string{"git:REDACTED@", "--ssh-key"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := validateSource(gitsync.Source{URL: tt.url})
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("validateSource() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validateSource() = nil, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("validateSource() = %v, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("validateSource() = %v shows the password", err)
			}
		})
	}
}

func TestGetWatchPrintsChanges(t *testing.T) {
	repo := gittest.NewRepo(t, "", "watch")
	repo.CommitFiles("one", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n"})
	server := startController(t, repo.Dir, "")
	eventually(t, "applied", func() string {
		if _, out, _ := cli(t, "get", "cm", "--server", server); !strings.Contains(out, "first") {
			return out
		}
		return ""
	})
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"get", "cm", "-w", "--server", server}, &out, io.Discard) }()
	eventually(t, "first listing", func() string {
		if !strings.Contains(out.String(), "first") {
			return out.String()
		}
		return ""
	})
	repo.CommitFiles("two", map[string]string{"b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n"})
	eventually(t, "listing after the commit", func() string {
		if !strings.Contains(out.String(), "second") {
			return out.String()
		}
		return ""
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("get -w exited %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("get -w did not stop when interrupted")
	}
}
