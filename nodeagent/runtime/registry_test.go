package runtime

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/internal/testregistry"
	corev1 "k8s.io/api/core/v1"
)

func TestRegistryPull(t *testing.T) {
	rt := needRuntime(t)
	reg := testregistry.Start(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busyboxImg := testimages.Image(t, testimages.BusyboxRef)
	testappImg := testimages.Image(t, testimages.TestappRef)
	suffix := randomID()
	ref := reg.Host + "/test/busybox-" + suffix + ":1"
	busyboxDigest := reg.Push(t, busyboxImg, "test/busybox-"+suffix+":1", nil)

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
		absent := reg.Host + "/test/never-" + suffix + ":1"
		_, err := rt.EnsureImage(ctx, absent, corev1.PullNever, Credentials{}, nil)
		if !errors.Is(err, ErrImageNeverPull) || !strings.Contains(err.Error(), absent) {
			t.Errorf("Never with the image absent: %v, want ErrImageNeverPull naming the image", err)
		}
	})

	t.Run("not found", func(t *testing.T) {
		missing := reg.Host + "/test/missing-" + suffix + ":1"
		_, err := rt.EnsureImage(ctx, missing, corev1.PullIfNotPresent, Credentials{}, nil)
		if !errors.Is(err, ErrImageNotFound) || errors.Is(err, ErrRegistryUnavailable) || !strings.Contains(err.Error(), missing) {
			t.Errorf("missing image: %v, want ErrImageNotFound naming the image", err)
		}
		// An existing repository without the tag is also not found.
		_, err = rt.EnsureImage(ctx, reg.Host+"/test/busybox-"+suffix+":nope", corev1.PullAlways, Credentials{}, nil)
		if !errors.Is(err, ErrImageNotFound) {
			t.Errorf("missing tag: %v, want ErrImageNotFound", err)
		}
	})

	t.Run("always vs if not present", func(t *testing.T) {
		moving := "test/moving-" + suffix + ":1"
		movingRef := reg.Host + "/" + moving
		d1 := reg.Push(t, testappImg, moving, nil)
		img, err := rt.EnsureImage(ctx, movingRef, corev1.PullIfNotPresent, Credentials{}, nil)
		if err != nil || img.Target().Digest.String() != d1 {
			t.Fatalf("first pull: %v, %v", err, img)
		}
		d2 := reg.Push(t, busyboxImg, moving, nil)
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
		reg.Stop()
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
	reg := testregistry.Start(t, "alice", "s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repoTag := "private/busybox-" + randomID() + ":1"
	reg.Push(t, testimages.Image(t, testimages.BusyboxRef), repoTag, &authn.Basic{Username: "alice", Password: "s3cret"})
	ref := reg.Host + "/" + repoTag

	_, err := rt.EnsureImage(ctx, ref, corev1.PullAlways, Credentials{}, nil)
	if !errors.Is(err, ErrRegistryUnauthorized) {
		t.Errorf("pull without credentials: %v, want ErrRegistryUnauthorized", err)
	}
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("alice:s3cret")))
	creds, err := ParseDockerConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.EnsureImage(ctx, ref, corev1.PullAlways, creds, nil); err != nil {
		t.Errorf("pull with credentials: %v", err)
	}
}
