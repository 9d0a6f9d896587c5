package runtime

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Tests of the pure parts; they need neither root nor containerd.

func TestNormalizeRef(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis", "docker.io/library/redis:latest"},
		{"redis:7", "docker.io/library/redis:7"},
		{"user/app", "docker.io/user/app:latest"},
		{"127.0.0.1:5000/x/y:1", "127.0.0.1:5000/x/y:1"},
		{"keelson.test/busybox:1", "keelson.test/busybox:1"},
		{"localhost:5000/a", "localhost:5000/a:latest"},
	}
	for _, tt := range tests {
		got, err := NormalizeRef(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := NormalizeRef("not a ref!"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("NormalizeRef(not a ref!) = %v, want invalid argument", err)
	}
}

func TestProcessArgs(t *testing.T) {
	cfg := ocispec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"c1", "c2"}}
	tests := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/ep", "c1", "c2"}},
		{"args replace cmd", nil, []string{"a"}, []string{"/ep", "a"}},
		{"command replaces both", []string{"/bin/x"}, nil, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"a"}, []string{"/bin/x", "a"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, processArgs(cfg, tt.command, tt.args)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestContainerID(t *testing.T) {
	uid := "0b7d3c4e-8f5a-4a57-9c1f-1d2e3f4a5b6c"
	if got, want := ContainerID(uid, "web", 2), uid+"-web-2"; got != want {
		t.Errorf("ContainerID = %q, want %q", got, want)
	}
	long := ContainerID(uid, strings.Repeat("x", 63), 1)
	if len(long) > 76 || !validID.MatchString(long) || !strings.HasSuffix(long, "-1") {
		t.Errorf("long ContainerID = %q", long)
	}
	if ContainerID(uid, strings.Repeat("x", 63), 1) == ContainerID(uid, strings.Repeat("y", 63), 1) {
		t.Errorf("hashed IDs collide")
	}
}

func TestCPUConversions(t *testing.T) {
	for _, tt := range []struct {
		milli int64
		want  uint64
	}{{0, 2}, {1, 2}, {100, 102}, {500, 512}, {1000, 1024}, {2500, 2560}} {
		if got := CPUShares(tt.milli); got != tt.want {
			t.Errorf("CPUShares(%d) = %d, want %d", tt.milli, got, tt.want)
		}
	}
	for _, tt := range []struct {
		milli int64
		want  int64
	}{{250, 25000}, {1000, 100000}, {5, 1000}, {1500, 150000}} {
		if got := CPUQuota(tt.milli, 100000); got != tt.want {
			t.Errorf("CPUQuota(%d) = %d, want %d", tt.milli, got, tt.want)
		}
	}
}

func TestParseDockerConfig(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cfg := fmt.Sprintf(`{"auths":{
		"https://index.docker.io/v1/":{"auth":%q},
		"127.0.0.1:5000":{"auth":%q},
		"https://ghcr.io":{"username":"u3","password":"p3"}}}`, b64("u1:p:1"), b64("u2:p2"))
	c, err := ParseDockerConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ host, user, pass string }{
		{"docker.io", "u1", "p:1"},
		{"registry-1.docker.io", "u1", "p:1"},
		{"127.0.0.1:5000", "u2", "p2"},
		{"ghcr.io", "u3", "p3"},
	} {
		u, p, ok := c.Lookup(tt.host)
		if !ok || u != tt.user || p != tt.pass {
			t.Errorf("Lookup(%s) = %q, %q, %v", tt.host, u, p, ok)
		}
	}
	if _, _, ok := c.Lookup("quay.io"); ok {
		t.Errorf("Lookup(quay.io) found credentials")
	}
	// Secrets never show in String or %v.
	if s := fmt.Sprintf("%v %s %+v", c, c, c); strings.Contains(s, "p2") || strings.Contains(s, "p3") {
		t.Errorf("credentials leak: %s", s)
	}
	legacy, err := ParseDockerConfig([]byte(fmt.Sprintf(`{"quay.io":{"auth":%q}}`, b64("q:w"))))
	if u, _, ok := legacy.Lookup("quay.io"); err != nil || !ok || u != "q" {
		t.Errorf("legacy .dockercfg: %v %v %q", err, ok, u)
	}
	for _, bad := range []string{`{`, `{"auths":{"x":{"auth":"!!"}}}`, fmt.Sprintf(`{"auths":{"x":{"auth":%q}}}`, b64("nocolon"))} {
		if _, err := ParseDockerConfig([]byte(bad)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseDockerConfig(%s) = %v, want invalid argument", bad, err)
		}
	}
	merged := Credentials{}.Merge(c)
	if diff := cmp.Diff(c.Hosts(), merged.Hosts()); diff != "" {
		t.Errorf("Merge hosts (-want +got):\n%s", diff)
	}
}

func TestInsecure(t *testing.T) {
	r := &Runtime{opts: Options{InsecureRegistries: []string{"reg.lan:5000", "plain.lan"}}}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost": true, "[::1]:5000": true, "127.0.0.2:80": true,
		"reg.lan:5000": true, "reg.lan:6000": false, "plain.lan:443": true, "docker.io": false,
	} {
		if got := r.insecure(host); got != want {
			t.Errorf("insecure(%s) = %v, want %v", host, got, want)
		}
	}
}

func TestClassifyPull(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("x: %w", errdefs.ErrNotFound), ErrImageNotFound},
		{errors.New(`failed to do request: Head "http://127.0.0.1:1/v2/a/manifests/1": dial tcp 127.0.0.1:1: connect: connection refused`), ErrRegistryUnavailable},
		{errors.New("unexpected status from HEAD request to http://x/v2/: 401 Unauthorized"), ErrRegistryUnauthorized},
	} {
		if got := classifyPull(tt.err); !errors.Is(got, tt.want) {
			t.Errorf("classifyPull(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// The shim holds the log open with O_APPEND; so does this writer.
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return string(b)
	}
	if rotated, err := RotateLog(path, 10, 2); err != nil || rotated {
		t.Fatalf("RotateLog of an empty log = %v, %v", rotated, err)
	}
	for i, gen := range []string{"first-gen\n", "second-gen\n", "third-gen\n"} {
		fmt.Fprint(w, gen)
		rotated, err := RotateLog(path, 10, 2)
		if err != nil || !rotated {
			t.Fatalf("rotation %d = %v, %v", i, rotated, err)
		}
	}
	fmt.Fprint(w, "new\n")
	got := []string{read(path), read(path + ".1"), read(path + ".2"), read(path + ".3")}
	want := []string{"new\n", "third-gen\n", "second-gen\n", ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logs after rotation (-want +got):\n%s", diff)
	}
	if rotated, err := RotateLog(filepath.Join(dir, "absent.log"), 1, 1); err != nil || rotated {
		t.Errorf("RotateLog(absent) = %v, %v", rotated, err)
	}
}

func TestShimGroup(t *testing.T) {
	seen := map[string]bool{}
	for i := range 200 {
		g := shimGroup(fmt.Sprintf("uid-%d", i))
		if g != shimGroup(fmt.Sprintf("uid-%d", i)) {
			t.Fatalf("group of uid-%d changes", i)
		}
		seen[g] = true
	}
	if len(seen) != shimGroups {
		t.Errorf("200 pods fall into %d shim groups, want %d", len(seen), shimGroups)
	}
}

func TestVerifyNonRoot(t *testing.T) {
	uid := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name      string
		sec       Security
		imageUser string
		wantErr   string // "" when allowed
	}{
		{"policy off, root image", Security{}, "", ""},
		{"runAsUser non-root", Security{RunAsNonRoot: true, RunAsUser: uid(1000)}, "", ""},
		{"runAsUser 0", Security{RunAsNonRoot: true, RunAsUser: uid(0)}, "1000", "runAsUser 0 breaks the non-root policy"},
		{"runAsUser wins over a root image", Security{RunAsNonRoot: true, RunAsUser: uid(1)}, "root", ""},
		{"image without USER", Security{RunAsNonRoot: true}, "", "image will run as root (it has no USER)"},
		{"image USER 0", Security{RunAsNonRoot: true}, "0:0", "image will run as root (USER 0:0)"},
		{"image USER numeric", Security{RunAsNonRoot: true}, "65532:65532", ""},
		{"image USER by name", Security{RunAsNonRoot: true}, "nobody", `image's user "nobody" is not numeric`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyNonRoot(tc.sec, tc.imageUser)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrRunAsRoot)):
				t.Errorf("error %v, want one wrapping ErrRunAsRoot with %q", err, tc.wantErr)
			}
		})
	}
}
