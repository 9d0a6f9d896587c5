package runtime

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/keelson/keelson/internal/testimages"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
)

const registryBinary = "/usr/bin/docker-registry"

// registry is Debian's docker-registry (distribution 2.8) on 127.0.0.1, run by a test.
type registry struct {
	host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
}

// startRegistry runs a registry storing in a temp dir; with user set, it requires basic
// authentication (htpasswd).
func startRegistry(t *testing.T, user, pass string) *registry {
	t.Helper()
	if _, err := os.Stat(registryBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker-registry is required in CI: %v", err)
		}
		t.Skipf("needs %s (Debian docker-registry): %v", registryBinary, err)
	}
	dir := t.TempDir()
	port := freePort(t)
	auth := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: keelson-test\n    path: %s\n", htpasswd)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
%s`, filepath.Join(dir, "data"), port, auth)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &registry{host: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan struct{})}
	r.cmd = exec.Command(registryBinary, "serve", cfgPath)
	if testing.Verbose() && os.Getenv("KEELSON_TEST_DEBUG") != "" {
		r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(r.stop)
	eventually(t, 15*time.Second, "the registry to serve", func() bool {
		resp, err := http.Get("http://" + r.host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200 || resp.StatusCode == 401
	})
	return r
}

func (r *registry) stop() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

func (r *registry) push(t *testing.T, img v1.Image, repoTag string, auth authn.Authenticator) string {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestRegistryPull(t *testing.T) {
	rt := needRuntime(t)
	reg := startRegistry(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busyboxImg := testimages.Image(t, testimages.BusyboxRef)
	testappImg := testimages.Image(t, testimages.TestappRef)
	suffix := randomID()
	ref := reg.host + "/test/busybox-" + suffix + ":1"
	busyboxDigest := reg.push(t, busyboxImg, "test/busybox-"+suffix+":1", nil)

	t.Run("pull and run", func(t *testing.T) {
		img, err := rt.EnsureImage(ctx, ref, corev1.PullIfNotPresent, Credentials{}, nil)
		if err != nil {
			t.Fatalf("EnsureImage: %v", err)
		}
		if img.Name() != ref {
			t.Errorf("image name = %s, want %s", img.Name(), ref)
		}
		s := newSpec(t, rt, ref, "echo", "pulled")
		if es, log := run(t, rt, s); es.Code != 0 || log != "pulled\n" {
			t.Errorf("run pulled image: %+v %q", es, log)
		}
	})

	t.Run("never", func(t *testing.T) {
		if _, err := rt.EnsureImage(ctx, ref, corev1.PullNever, Credentials{}, nil); err != nil {
			t.Errorf("Never with the image present: %v", err)
		}
		absent := reg.host + "/test/never-" + suffix + ":1"
		_, err := rt.EnsureImage(ctx, absent, corev1.PullNever, Credentials{}, nil)
		if !errors.Is(err, ErrImageNeverPull) || !strings.Contains(err.Error(), absent) {
			t.Errorf("Never with the image absent: %v, want ErrImageNeverPull naming the image", err)
		}
	})

	t.Run("not found", func(t *testing.T) {
		missing := reg.host + "/test/missing-" + suffix + ":1"
		_, err := rt.EnsureImage(ctx, missing, corev1.PullIfNotPresent, Credentials{}, nil)
		if !errors.Is(err, ErrImageNotFound) || errors.Is(err, ErrRegistryUnavailable) || !strings.Contains(err.Error(), missing) {
			t.Errorf("missing image: %v, want ErrImageNotFound naming the image", err)
		}
		// An existing repository without the tag is also not found.
		_, err = rt.EnsureImage(ctx, reg.host+"/test/busybox-"+suffix+":nope", corev1.PullAlways, Credentials{}, nil)
		if !errors.Is(err, ErrImageNotFound) {
			t.Errorf("missing tag: %v, want ErrImageNotFound", err)
		}
	})

	t.Run("always vs if not present", func(t *testing.T) {
		moving := "test/moving-" + suffix + ":1"
		movingRef := reg.host + "/" + moving
		d1 := reg.push(t, testappImg, moving, nil)
		img, err := rt.EnsureImage(ctx, movingRef, corev1.PullIfNotPresent, Credentials{}, nil)
		if err != nil || img.Target().Digest.String() != d1 {
			t.Fatalf("first pull: %v, %v", err, img)
		}
		d2 := reg.push(t, busyboxImg, moving, nil)
		if d2 != busyboxDigest || d1 == d2 {
			t.Fatalf("digests %s %s", d1, d2)
		}
		img, err = rt.EnsureImage(ctx, movingRef, corev1.PullIfNotPresent, Credentials{}, nil)
		if err != nil || img.Target().Digest.String() != d1 {
			t.Errorf("IfNotPresent pulled again: %v, %s, want %s", err, img.Target().Digest, d1)
		}
		var progress []string
		img, err = rt.EnsureImage(ctx, movingRef, corev1.PullAlways, Credentials{}, func(s string) { progress = append(progress, s) })
		if err != nil || img.Target().Digest.String() != d2 {
			t.Errorf("Always did not pull the new image: %v, %v, want %s", err, img, d2)
		}
		t.Logf("progress: %q", progress)
	})

	t.Run("registry down", func(t *testing.T) {
		reg.stop()
		_, err := rt.EnsureImage(ctx, ref, corev1.PullAlways, Credentials{}, nil)
		if !errors.Is(err, ErrRegistryUnavailable) || errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), ref) {
			t.Errorf("Always with the registry down: %v, want ErrRegistryUnavailable naming the image", err)
		}
		if _, err := rt.EnsureImage(ctx, ref, corev1.PullIfNotPresent, Credentials{}, nil); err != nil {
			t.Errorf("IfNotPresent with the image present and the registry down: %v", err)
		}
	})
}

func TestRegistryCredentials(t *testing.T) {
	rt := needRuntime(t)
	reg := startRegistry(t, "alice", "s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repoTag := "private/busybox-" + randomID() + ":1"
	reg.push(t, testimages.Image(t, testimages.BusyboxRef), repoTag, &authn.Basic{Username: "alice", Password: "s3cret"})
	ref := reg.host + "/" + repoTag

	_, err := rt.EnsureImage(ctx, ref, corev1.PullAlways, Credentials{}, nil)
	if !errors.Is(err, ErrRegistryUnauthorized) {
		t.Errorf("pull without credentials: %v, want ErrRegistryUnauthorized", err)
	}
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.host, base64.StdEncoding.EncodeToString([]byte("alice:s3cret")))
	creds, err := ParseDockerConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.EnsureImage(ctx, ref, corev1.PullAlways, creds, nil); err != nil {
		t.Errorf("pull with credentials: %v", err)
	}
}
