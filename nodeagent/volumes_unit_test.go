package nodeagent

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/internal/gittest"
)

func ptrTo[T any](v T) *T { return &v }

func TestValidatePath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"a", true}, {"a/b/c.txt", true}, {".hidden", true}, {"a/..b", true}, {"..a/b", false},
		{"", false}, {"/etc/passwd", false}, {"../x", false}, {"a/../../x", false}, {"a/..", false},
		{strings.Repeat("x", 256), false}, {strings.Repeat("x/", 2049), false},
	} {
		err := validatePath(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("validatePath(%.20q) = %v, want ok=%v", tc.path, err, tc.ok)
		}
	}
}

func TestKeyPayload(t *testing.T) {
	data := map[string][]byte{"a": []byte("A"), "b": []byte("B")}
	type file struct {
		Data string
		Mode int32
	}
	for _, tc := range []struct {
		name     string
		items    []corev1.KeyToPath
		mode     int32
		optional bool
		want     map[string]file
		err      string
	}{
		{name: "all keys, default mode", mode: 0o644, want: map[string]file{"a": {"A", 0o644}, "b": {"B", 0o644}}},
		{name: "defaultMode", mode: 0o400, want: map[string]file{"a": {"A", 0o400}, "b": {"B", 0o400}}},
		{name: "items with path and mode", mode: 0o644,
			items: []corev1.KeyToPath{{Key: "a", Path: "dir/a.conf", Mode: ptrTo[int32](0o600)}, {Key: "b", Path: "b"}},
			want:  map[string]file{"dir/a.conf": {"A", 0o600}, "b": {"B", 0o644}}},
		{name: "missing key", mode: 0o644, items: []corev1.KeyToPath{{Key: "x", Path: "x"}}, err: `key "x" not found in secret "db"`},
		{name: "missing optional key", mode: 0o644, optional: true, items: []corev1.KeyToPath{{Key: "x", Path: "x"}, {Key: "a", Path: "a"}},
			want: map[string]file{"a": {"A", 0o644}}},
		{name: "escaping item path", mode: 0o644, items: []corev1.KeyToPath{{Key: "a", Path: "../a"}}, err: "must not contain '..'"},
		{name: "absolute item path", mode: 0o644, items: []corev1.KeyToPath{{Key: "a", Path: "/a"}}, err: "must be relative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keyPayload("secret", "db", data, tc.items, tc.mode, tc.optional)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "A") && strings.Contains(err.Error(), "B") {
					t.Errorf("error shows values: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]file{}
			for p, f := range got {
				files[p] = file{string(f.data), f.mode}
			}
			if d := cmp.Diff(tc.want, files); d != "" {
				t.Errorf("payload (-want +got):\n%s", d)
			}
		})
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u-1",
			Labels: map[string]string{"tier": "front", "app": "web"}, Annotations: map[string]string{"note": "a \"quoted\"\nline"}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa", Containers: []corev1.Container{{
			Name: "c",
			Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			},
		}}},
	}
}

func TestDownwardPayload(t *testing.T) {
	pod := testPod()
	node := nodeResources{cpuMilli: 4000, memory: 8 << 30}
	items := []corev1.DownwardAPIVolumeFile{
		{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		{Path: "meta/name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}, Mode: ptrTo[int32](0o600)},
		{Path: "tier", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}},
		{Path: "mem", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
		{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.cpu"}},
		{Path: "req", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "requests.cpu", Divisor: resource.MustParse("1m")}},
	}
	got, err := downwardPayload(pod, items, 0o644, node)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for p, f := range got {
		files[p] = string(f.data)
	}
	want := map[string]string{
		"labels":      "app=\"web\"\ntier=\"front\"",
		"annotations": `note="a \"quoted\"\nline"`,
		"meta/name":   "web",
		"tier":        "front",
		"mem":         "64",
		"cpu":         "4", // no limit: the node's allocatable
		"req":         "250",
	}
	if d := cmp.Diff(want, files); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	if got["meta/name"].mode != 0o600 || got["labels"].mode != 0o644 {
		t.Errorf("modes: %o %o", got["meta/name"].mode, got["labels"].mode)
	}
	if _, err := downwardPayload(pod, []corev1.DownwardAPIVolumeFile{{Path: "ip", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}, 0o644, node); err == nil {
		t.Error("status.podIP in a downwardAPI volume: no error")
	}
}

func TestContainerEnv(t *testing.T) {
	configs := &configStore{}
	configs.set([]*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "shop"}, Data: map[string]string{"mode": "fast", "1x": "bad", "lvl": "3"}}},
		[]*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Data: map[string][]byte{"pw": []byte("hunter2")}, StringData: map[string]string{"user": "admin"}}})
	ref := func(src corev1.EnvVarSource) *corev1.EnvVarSource { return &src }
	for _, tc := range []struct {
		name     string
		env      []corev1.EnvVar
		envFrom  []corev1.EnvFromSource
		want     []string
		err      string
		warnings []string
	}{
		{name: "values and expansion", env: []corev1.EnvVar{{Name: "A", Value: "x"}, {Name: "B", Value: "$(A)-$(C)-$$(A)"}},
			want: []string{"A=x", "B=x-$(C)-$(A)", "HOSTNAME=web"}},
		{name: "configMapKeyRef and secretKeyRef", env: []corev1.EnvVar{
			{Name: "MODE", ValueFrom: ref(corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "mode"}})},
			{Name: "PW", ValueFrom: ref(corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "pw"}})},
			{Name: "USER", ValueFrom: ref(corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "user"}})},
			{Name: "NOT_EXPANDED", Value: "$(MODE)"},
		}, want: []string{"MODE=fast", "PW=hunter2", "USER=admin", "NOT_EXPANDED=fast", "HOSTNAME=web"}},
		{name: "missing configmap", env: []corev1.EnvVar{{Name: "X", ValueFrom: ref(corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}, Key: "k"}})}},
			err: `env X: configmap "web-config" not found`},
		{name: "missing secret key", env: []corev1.EnvVar{{Name: "X", ValueFrom: ref(corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "x"}})}},
			err: `key "x" not found in secret "db"`},
		{name: "optional missing", env: []corev1.EnvVar{
			{Name: "X", ValueFrom: ref(corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "x", Optional: ptrTo(true)}})},
			{Name: "Y", ValueFrom: ref(corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "x", Optional: ptrTo(true)}})},
		}, envFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptrTo(true)}}},
			want: []string{"HOSTNAME=web"}},
		{name: "envFrom with prefix, invalid keys skipped, env overrides", envFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{Prefix: "DB_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
		}, env: []corev1.EnvVar{{Name: "mode", Value: "slow"}},
			want:     []string{"lvl=3", "mode=slow", "DB_pw=hunter2", "DB_user=admin", "HOSTNAME=web"},
			warnings: []string{"InvalidEnvironmentVariableNames: Keys [1x] from the EnvFrom configMap shop/cfg were skipped since they are considered invalid environment variable names."}},
		{name: "fields", env: []corev1.EnvVar{
			{Name: "IP", ValueFrom: ref(corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}})},
			{Name: "HOST", ValueFrom: ref(corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}})},
			{Name: "NODE", ValueFrom: ref(corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}})},
			{Name: "NOTE", ValueFrom: ref(corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['note']"}})},
			{Name: "MEM", ValueFrom: ref(corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}})},
			{Name: "CPU", ValueFrom: ref(corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu", Divisor: resource.MustParse("1m")}})},
			{Name: "RMEM", ValueFrom: ref(corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.memory"}})},
		}, want: []string{"IP=10.1.2.3", "HOST=192.0.2.1", "NODE=n1", "NOTE=a \"quoted\"\nline", "MEM=64", "CPU=2000", "RMEM=67108864", "HOSTNAME=web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warnings []string
			in := envInputs{pod: testPod(), podIP: "10.1.2.3", hostIP: "192.0.2.1", configs: configs, node: nodeResources{cpuMilli: 2000, memory: 1 << 30},
				warn: func(reason, msg string) { warnings = append(warnings, reason+": "+msg) }}
			c := &corev1.Container{Name: "c", Env: tc.env, EnvFrom: tc.envFrom, Resources: in.pod.Spec.Containers[0].Resources}
			got, err := containerEnv(in, c)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error shows a secret value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("env (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.warnings, warnings); d != "" {
				t.Errorf("warnings (-want +got):\n%s", d)
			}
		})
	}
}

func TestConfigStoreChangesAndPodRefs(t *testing.T) {
	s := &configStore{}
	cm := func(name, v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": v}}
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"pw": "x"}}
	names := func(m map[configRef]bool) []string {
		var out []string
		for r := range m {
			out = append(out, map[bool]string{true: "secret", false: "configmap"}[r.secret]+"/"+r.namespace+"/"+r.name)
		}
		sort.Strings(out)
		return out
	}
	if got := names(s.set([]*corev1.ConfigMap{cm("a", "1"), cm("b", "1")}, []*corev1.Secret{sec})); !cmp.Equal(got, []string{"configmap/default/a", "configmap/default/b", "secret/default/db"}) {
		t.Errorf("first set changed %v", got)
	}
	if got := names(s.set([]*corev1.ConfigMap{cm("a", "2"), cm("b", "1")}, []*corev1.Secret{sec})); !cmp.Equal(got, []string{"configmap/default/a"}) {
		t.Errorf("second set changed %v", got)
	}
	if got := names(s.set([]*corev1.ConfigMap{cm("a", "2")}, nil)); !cmp.Equal(got, []string{"configmap/default/b", "secret/default/db"}) {
		t.Errorf("third set changed %v", got)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}}}}}}},
		Containers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "a"}}}}}},
	}}
	if got := names(podConfigRefs(pod)); !cmp.Equal(got, []string{"configmap/default/a", "secret/default/db"}) {
		t.Errorf("pod refs %v", got)
	}
	if !usesAny(pod, map[configRef]bool{{secret: true, namespace: "default", name: "db"}: true}) || usesAny(pod, map[configRef]bool{{namespace: "default", name: "b"}: true}) {
		t.Error("usesAny")
	}
}

func TestWriteAtomicSwapsData(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	changed, err := writeAtomic(dir, map[string]fileProjection{"a": {[]byte("1"), 0o600}, "sub/b": {[]byte("2"), 0o644}}, now, -1)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))
	if !strings.HasPrefix(first, "..2026_05_01_12_00_00.") {
		t.Errorf("..data -> %q", first)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "sub")); l != "..data/sub" {
		t.Errorf("sub -> %q", l)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of a: %v %v", fi, err)
	}
	if read("a") != "1" || read("sub/b") != "2" {
		t.Errorf("content: %q %q", read("a"), read("sub/b"))
	}
	if changed, err := writeAtomic(dir, map[string]fileProjection{"a": {[]byte("1"), 0o600}, "sub/b": {[]byte("2"), 0o644}}, now, -1); err != nil || changed {
		t.Errorf("same payload rewritten: %v %v", changed, err)
	}
	// An update: new data directory, old one removed, a key dropped, its link gone.
	changed, err = writeAtomic(dir, map[string]fileProjection{"a": {[]byte("one"), 0o600}, "c": {[]byte("3"), 0o644}}, now.Add(time.Second), -1)
	if err != nil || !changed {
		t.Fatalf("update: %v %v", changed, err)
	}
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	if second == first {
		t.Error("..data did not move")
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old data directory still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Errorf("link of a dropped key still there: %v", err)
	}
	if read("a") != "one" || read("c") != "3" {
		t.Errorf("updated content: %q %q", read("a"), read("c"))
	}
	if _, err := writeAtomic(dir, map[string]fileProjection{"../x": {[]byte("x"), 0o644}}, now, -1); err == nil {
		t.Error("escaping payload path written")
	}
}

func TestResolveSubPath(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "d", "e"), 0o755))
	must(os.WriteFile(filepath.Join(root, "d", "f"), []byte("x"), 0o644))
	must(os.Symlink("/", filepath.Join(root, "toroot")))
	must(os.Symlink("/etc/passwd", filepath.Join(root, "passwd")))
	must(os.Symlink("d/f", filepath.Join(root, "inside")))
	must(os.Symlink("../../..", filepath.Join(root, "d", "up")))
	must(os.Symlink("/no/such/place", filepath.Join(root, "dangling")))
	for _, tc := range []struct {
		sub    string
		create bool
		want   string // relative to root; "" means refused
	}{
		{"d/f", false, "d/f"},
		{"d/e", false, "d/e"},
		{"inside", false, "d/f"},
		{"new/dir", true, "new/dir"},
		{"missing", false, ""},
		{"../x", true, ""},
		{"d/../../x", true, ""},
		{"/etc", true, ""},
		{"toroot", true, ""},
		{"toroot/etc", true, ""},
		{"passwd", true, ""},
		{"d/up", true, ""},
		{"d/up/etc/passwd", true, ""},
		{"dangling", true, ""},
	} {
		got, err := resolveSubPath(root, tc.sub, tc.create)
		if tc.want == "" {
			if err == nil {
				t.Errorf("subPath %q accepted as %s", tc.sub, got)
			} else if !strings.Contains(err.Error(), `"`+tc.sub+`"`) {
				t.Errorf("subPath %q: error does not name it: %v", tc.sub, err)
			}
			continue
		}
		realRoot, _ := filepath.EvalSymlinks(root)
		if err != nil || got != filepath.Join(realRoot, tc.want) {
			t.Errorf("subPath %q = %q, %v; want %s", tc.sub, got, err, tc.want)
		}
	}
}

func TestCheckHostPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		path string
		typ  corev1.HostPathType
		err  string
	}{
		{missing, corev1.HostPathUnset, ""},
		{dir, corev1.HostPathDirectory, ""},
		{missing, corev1.HostPathDirectory, missing + " does not exist"},
		{file, corev1.HostPathDirectory, "is not a directory"},
		{file, corev1.HostPathFile, ""},
		{dir, corev1.HostPathFile, "is not a file"},
		{missing, corev1.HostPathFile, "does not exist"},
		{file, corev1.HostPathSocket, "is not a socket"},
		{"/dev/null", corev1.HostPathCharDev, ""},
		{"/dev/null", corev1.HostPathBlockDev, "is not a block device"},
		{filepath.Join(dir, "new", "dir"), corev1.HostPathDirectoryOrCreate, ""},
		{filepath.Join(dir, "newfile"), corev1.HostPathFileOrCreate, ""},
		{"relative", corev1.HostPathUnset, "not an absolute path"},
		{dir, "Bogus", "not valid"},
	} {
		err := checkHostPath(tc.path, tc.typ)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkHostPath(%s, %q) = %v, want %q", tc.path, tc.typ, err, tc.err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "new", "dir")); err != nil || !fi.IsDir() {
		t.Errorf("DirectoryOrCreate did not create: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "newfile")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("FileOrCreate did not create: %v", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b\011c`); got != "/a b\tc" {
		t.Errorf("got %q", got)
	}
}

// TestWriteAtomicFSGroup: with an fsGroup, the files of every new data
// directory belong to the group, which may read them (0400 becomes 0440),
// before ..data points to them; directories get the setgid bit.
func TestWriteAtomicFSGroup(t *testing.T) {
	gittest.RequireRoot(t, "gives files to another group")
	dir := t.TempDir()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const gid = 4321
	check := func(when string) {
		for p, mode := range map[string]fs.FileMode{"..data/a": 0o440, "..data/sub/b": 0o644 | 0o040, "..data/sub": fs.ModeDir | fs.ModeSetgid | 0o755} {
			fi, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Gid) != gid || fi.Mode() != mode {
				t.Errorf("%s: %s has group %d, mode %v; want %d, %v", when, p, st.Gid, fi.Mode(), gid, mode)
			}
		}
	}
	if _, err := writeAtomic(dir, map[string]fileProjection{"a": {[]byte("1"), 0o400}, "sub/b": {[]byte("2"), 0o644}}, now, gid); err != nil {
		t.Fatal(err)
	}
	check("first write")
	if _, err := writeAtomic(dir, map[string]fileProjection{"a": {[]byte("one"), 0o400}, "sub/b": {[]byte("2"), 0o644}}, now.Add(time.Second), gid); err != nil {
		t.Fatal(err)
	}
	check("update")
}
