package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/keelson/keelson/internal/testimages"
)

// writeOCIArchive writes img as an OCI image layout tarball named ref.
func writeOCIArchive(t *testing.T, ref, path string) {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := testimages.Image(t, testimages.BusyboxRef)
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": "1",
	})); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(dir, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestImportDirOCIAndDocker(t *testing.T) {
	rt := needRuntime(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "images")
	testimages.Build(t, dir) // docker-save archives of busybox and testapp
	ociRef := "keelson.test/oci-busybox:1"
	writeOCIArchive(t, ociRef, filepath.Join(dir, "oci.tar"))
	if err := os.WriteFile(filepath.Join(dir, "ignored.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := rt.ImportDir(ctx, dir)
	if err != nil {
		t.Fatalf("ImportDir: %v", err)
	}
	for _, want := range []string{testimages.BusyboxRef, testimages.TestappRef, ociRef} {
		if !slices.Contains(names, want) {
			t.Errorf("ImportDir names %v lack %s", names, want)
		}
	}
	s := newSpec(t, rt, ociRef, "echo", "oci")
	if es, log := run(t, rt, s); es.Code != 0 || log != "oci\n" {
		t.Errorf("run OCI-imported image: %+v %q", es, log)
	}
	if names, err := rt.ImportDir(ctx, filepath.Join(dir, "absent")); err != nil || len(names) != 0 {
		t.Errorf("ImportDir(absent) = %v, %v", names, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.tar")
	if err := os.WriteFile(bad, []byte("not a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.ImportArchive(ctx, bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("ImportArchive(bad) = %v, want an error naming the file", err)
	}
}

func TestExecTTY(t *testing.T) {
	rt := needRuntime(t)
	s := newSpec(t, rt, busybox, "sleep", "1000")
	c := start(t, rt, s)
	var out bytes.Buffer
	code, err := rt.Exec(context.Background(), c.ID, []string{"sh", "-c", "test -t 1 && echo tty; echo e >&2"}, true, nil, &out, io.Discard)
	if err != nil || code != 0 {
		t.Fatalf("Exec tty = %d, %v", code, err)
	}
	if got := strings.ReplaceAll(out.String(), "\r", ""); got != "tty\ne\n" {
		t.Errorf("tty output = %q, want stdout and stderr merged", got)
	}
}
