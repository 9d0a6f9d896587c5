package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustLoad(t *testing.T, files map[string]string) []*Object {
	t.Helper()
	r := NewLoader(Options{}).Load(memFiles(files))
	if !r.OK() {
		t.Fatalf("load: %v", issueLines(r))
	}
	return r.Objects
}

func TestDiff(t *testing.T) {
	secret := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: %s\n"
	tests := []struct {
		name     string
		from, to map[string]string
		want     []Change
	}{
		{
			name: "no change",
			from: map[string]string{"a.yaml": deployment},
			to:   map[string]string{"moved.yaml": deployment},
		},
		{
			name: "added and removed",
			from: map[string]string{"a.yaml": deployment},
			to:   map[string]string{"b.yaml": service},
			want: []Change{
				{Key: "Deployment/default/web", Op: "removed", File: "a.yaml", Line: 1},
				{Key: "Service/default/web", Op: "added", File: "b.yaml", Line: 1},
			},
		},
		{
			name: "changed fields",
			from: map[string]string{"a.yaml": deployment},
			to: map[string]string{"a.yaml": strings.NewReplacer(
				"replicas: 2", "replicas: 3",
				"image: nginx:1.27", "image: nginx:1.28",
				"        - containerPort: 80\n", "        - containerPort: 80\n        - containerPort: 443\n",
				"  labels:\n    app: web\n", "  labels:\n    app: web\n    app.kubernetes.io/part-of: shop\n",
			).Replace(deployment)},
			want: []Change{{Key: "Deployment/default/web", Op: "changed", File: "a.yaml", Line: 1, Fields: []FieldChange{
				{Path: "metadata.labels[app.kubernetes.io/part-of]", To: `"shop"`},
				{Path: "spec.replicas", From: "2", To: "3"},
				{Path: "spec.template.spec.containers[0].image", From: `"nginx:1.27"`, To: `"nginx:1.28"`},
				{Path: "spec.template.spec.containers[0].ports[1]", To: `{"containerPort":443}`},
			}}},
		},
		{
			name: "secret values hidden",
			from: map[string]string{"s.yaml": strings.Replace(secret, "%s", "hunter2", 1)},
			to:   map[string]string{"s.yaml": strings.Replace(secret, "%s", "correct-horse", 1)},
			want: []Change{{Key: "Secret/default/s", Op: "changed", File: "s.yaml", Line: 1, Fields: []FieldChange{
				{Path: "stringData.password", From: "(hidden)", To: "(hidden)"},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(mustLoad(t, tt.from), mustLoad(t, tt.to))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
		})
	}
}
