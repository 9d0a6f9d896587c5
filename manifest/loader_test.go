package manifest

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/internal/badcorpus"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/bad")

// issueLines renders a result's issues as the golden files hold them:
// errors in String form, then warnings prefixed with "warning: ".
func issueLines(r *Result) []string {
	var lines []string
	for _, e := range r.Errors {
		lines = append(lines, e.String())
	}
	for _, w := range r.Warnings {
		lines = append(lines, "warning: "+w.String())
	}
	return lines
}

func loadDir(t *testing.T, dir string) *Result {
	t.Helper()
	files, err := DirFiles(dir)
	if err != nil {
		t.Fatalf("DirFiles(%s): %v", dir, err)
	}
	return NewLoader(Options{}).Load(files)
}

func TestSeedManifestsLoad(t *testing.T) {
	r := loadDir(t, "testdata/seed")
	if !r.OK() {
		t.Fatalf("seed manifests rejected:\n%s", strings.Join(issueLines(r), "\n"))
	}
	var keys []string
	for _, o := range r.Objects {
		keys = append(keys, o.Key())
	}
	want := []string{
		"Deployment/default/smackweb-deploy",
		"Pod/default/example-pod",
		"Pod/default/redis-django",
		"Pod/default/redis-django-limited",
		"Service/default/internalservice",
		"Service/default/my-service",
		"StorageClass/azurefile",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	wantWarn := []string{"deployment-smackweb-v1beta1.yaml:1: Deployment/default/smackweb-deploy: apiVersion: apps/v1beta1 Deployment is deprecated: change apiVersion to apps/v1 and add spec.selector.matchLabels"}
	var warns []string
	for _, w := range r.Warnings {
		warns = append(warns, w.String())
	}
	if diff := cmp.Diff(wantWarn, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	for _, o := range r.Objects {
		if o.Kind == "Deployment" {
			if o.APIVersion != "apps/v1" {
				t.Errorf("deployment served as %s, want apps/v1", o.APIVersion)
			}
		}
	}
}

func TestSeedBadManifestFails(t *testing.T) {
	r := loadDir(t, "testdata/seed-bad")
	want := []string{`service-lb-placeholder-ip.yaml:6: Service/default/frontend-service: spec.loadBalancerIP: Invalid value: "X.X.X.X": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`}
	if diff := cmp.Diff(want, issueLines(r)); diff != "" {
		t.Errorf("issues (-want +got):\n%s", diff)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestBadCorpus(t *testing.T) {
	cases := badcorpus.Cases(t, "testdata/bad")
	if len(cases) < 30 {
		t.Errorf("bad corpus has %d cases, want at least 30", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r := loadDir(t, c.Dir(t))
			got := issueLines(r)
			if r.OK() {
				t.Errorf("revision accepted; want errors")
			}
			for _, e := range r.Errors {
				if e.File == "" {
					t.Errorf("issue without a file: %v", e)
				}
			}
			if *update {
				if err := os.WriteFile(c.Golden, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(c.Want(t), got); diff != "" {
				t.Errorf("issues (-want +got):\n%s", diff)
			}
		})
	}
}

// memFiles builds Files from path → content; a content starting with
// "symlink:" makes a symlink.
func memFiles(m map[string]string) []File {
	var files []File
	for p, c := range m {
		if target, ok := strings.CutPrefix(c, "symlink:"); ok {
			files = append(files, File{Path: p, Hash: "l" + target, Mode: fs.ModeSymlink, Target: target})
			continue
		}
		content := []byte(c)
		files = append(files, File{Path: p, Hash: fmt.Sprintf("%x", hashString(c)), Size: int64(len(c)),
			Read: func() ([]byte, error) { return content, nil }})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files
}

func hashString(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
`

const service = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
`

func TestGoodCases(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		want     []string // "Key file:line"
		warnings []string
	}{
		{
			name:  "multi-document",
			files: map[string]string{"app.yaml": "# web\n---\n" + deployment + "---\n---\n# nothing\n---\n" + service},
			want:  []string{"Deployment/default/web app.yaml:3", "Service/default/web app.yaml:28"},
		},
		{
			name: "list",
			files: map[string]string{"list.yaml": `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: a
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: b
`},
			want: []string{"ConfigMap/default/a list.yaml:4", "ConfigMap/default/b list.yaml:8"},
		},
		{
			name: "json",
			files: map[string]string{"ns.json": `{
	"apiVersion": "v1",
	"kind": "Namespace",
	"metadata": {"name": "shop"}
}
`, "cm.json": `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"a": "b"}}`},
			want: []string{"ConfigMap/shop/c cm.json:1", "Namespace/shop ns.json:1"},
		},
		{
			name: "kustomize",
			files: map[string]string{
				"app/kustomization.yaml": `namePrefix: prod-
commonLabels:
  env: prod
resources:
- deployment.yaml
- service.yaml
configMapGenerator:
- name: settings
  literals:
  - LOG_LEVEL=info
`,
				"app/deployment.yaml": deployment,
				"app/service.yaml":    service,
				"app/ignored.yaml":    "not: a manifest\n",
				"other/cm.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n",
			},
			want: []string{
				"ConfigMap/default/other other/cm.yaml:1",
				"ConfigMap/default/prod-settings-", // hash suffix
				"Deployment/default/prod-web app/kustomization.yaml:1",
				"Service/default/prod-web app/kustomization.yaml:1",
			},
		},
		{
			name: "kustomize with base and overlay",
			files: map[string]string{
				"base/kustomization.yaml":    "resources:\n- deployment.yaml\n",
				"base/deployment.yaml":       deployment,
				"overlay/kustomization.yaml": "namespace: shop\nresources:\n- ../base\n- ns.yaml\n",
				"overlay/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
			},
			want: []string{"Deployment/default/web base/kustomization.yaml:1", "Deployment/shop/web overlay/kustomization.yaml:1", "Namespace/shop overlay/kustomization.yaml:1"},
		},
		{
			name: "hidden directories and files skipped",
			files: map[string]string{
				".github/workflows/ci.yaml": "on: push\n",
				".gitlab-ci.yml":            "stages: []\n",
				"app/.draft/x.yaml":         "garbage: [\n",
				"app/cm.yaml":               "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
				"README.md":                 "# not a manifest\n",
			},
			want: []string{"ConfigMap/default/c app/cm.yaml:1"},
		},
		{
			name: "symlink inside the repository is followed",
			files: map[string]string{
				"shared/cm.txt": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
				"app/cm.yaml":   "symlink:../shared/cm.txt",
			},
			want: []string{"ConfigMap/default/c app/cm.yaml:1"},
		},
		{
			name: "no-effect kinds warn",
			files: map[string]string{"rbac.yaml": `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: web
`},
			want: []string{"PodDisruptionBudget/default/web rbac.yaml:10", "Role/default/reader rbac.yaml:1"},
			warnings: []string{
				"rbac.yaml:2: Role/default/reader: kind: Role has no effect yet: Keelson stores it but does not act on it",
				"rbac.yaml:11: PodDisruptionBudget/default/web: kind: PodDisruptionBudget has no effect yet: Keelson stores it but does not act on it",
			},
		},
		{
			name: "old forms are converted",
			files: map[string]string{"old.yaml": `apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: web
spec:
  backend:
    serviceName: web
    servicePort: 80
  rules:
  - host: example.com
    http:
      paths:
      - path: /
        backend:
          serviceName: web
          servicePort: http
---
apiVersion: apps/v1beta2
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: agent
        image: agent:1
`},
			want: []string{"DaemonSet/default/agent old.yaml:18", "Ingress/default/web old.yaml:1"},
			warnings: []string{
				"old.yaml:1: Ingress/default/web: apiVersion: extensions/v1beta1 Ingress is deprecated: change apiVersion to networking.k8s.io/v1, rename spec.backend to spec.defaultBackend, write backends as service.name and service.port.number (or service.port.name), set pathType on every path (ImplementationSpecific keeps the old meaning)",
				"old.yaml:18: DaemonSet/default/agent: apiVersion: apps/v1beta2 DaemonSet is deprecated: change apiVersion to apps/v1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewLoader(Options{}).Load(memFiles(tt.files))
			if !r.OK() {
				t.Fatalf("rejected:\n%s", strings.Join(issueLines(r), "\n"))
			}
			var got []string
			for _, o := range r.Objects {
				s := fmt.Sprintf("%s %s:%d", o.Key(), o.File, o.Line)
				if strings.HasPrefix(o.Name, "prod-settings-") {
					s = "ConfigMap/default/prod-settings-"
				}
				got = append(got, s)
				if o.Hash == "" || o.Obj == nil {
					t.Errorf("%s: no hash or object", o.Key())
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			var warns []string
			for _, w := range r.Warnings {
				warns = append(warns, w.String())
			}
			if diff := cmp.Diff(tt.warnings, warns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}
