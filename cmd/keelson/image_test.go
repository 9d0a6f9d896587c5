package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/runtime"
)

func TestImageImport(t *testing.T) {
	gittest.RequireRoot(t, "runs containerd")
	dataDir, err := os.MkdirTemp("", "ki") // short: containerd's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	ctx := context.Background()
	d, err := runtime.StartDaemon(ctx, filepath.Join(dataDir, "containerd"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	busybox, testapp := testimages.Busybox(t), testimages.Testapp(t)

	// By the agent's data directory, two archives at once.
	code, out, errOut := cli(t, "image", "import", "--data-dir", dataDir, busybox, testapp)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"imported " + testimages.BusyboxRef + " from " + busybox,
		"imported " + testimages.TestappRef + " from " + testapp,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}
	// By the socket, again: importing is idempotent.
	if code, out, errOut := cli(t, "image", "import", "--containerd-socket", d.Socket(), busybox); code != 0 || !strings.Contains(out, testimages.BusyboxRef) {
		t.Errorf("import by socket: exit %d: %s %s", code, out, errOut)
	}
	// A missing file fails and names it.
	missing := filepath.Join(dataDir, "nope.tar")
	if code, _, errOut := cli(t, "image", "import", "--data-dir", dataDir, missing); code != 1 || !strings.Contains(errOut, missing) {
		t.Errorf("import of a missing file: exit %d, stderr %q", code, errOut)
	}

	rt, err := runtime.Connect(ctx, d.Socket(), "keelson", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	imgs, err := rt.Client().ListImages(namespaces.WithNamespace(ctx, "keelson"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name())
	}
	for _, ref := range []string{testimages.BusyboxRef, testimages.TestappRef} {
		want, _ := runtime.NormalizeRef(ref)
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("%s not listed in %v", want, names)
		}
	}
	// Usable without a registry: a container of it runs.
	if _, err := rt.EnsureImage(ctx, testimages.BusyboxRef, corev1.PullNever, runtime.Credentials{}, nil); err != nil {
		t.Fatalf("EnsureImage(Never): %v", err)
	}
	logPath := filepath.Join(dataDir, "c.log")
	c, err := rt.Start(ctx, runtime.ContainerSpec{PodUID: "image-import-test", PodName: "p", PodNamespace: "default",
		ContainerName: "c", Image: testimages.BusyboxRef, Command: []string{"echo", "from the imported image"}, LogPath: logPath})
	if err != nil {
		t.Fatalf("start a container of the imported image: %v", err)
	}
	defer func() { _ = rt.Remove(ctx, c.ID) }()
	ch, err := rt.Wait(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-ch:
		if s.Code != 0 {
			t.Errorf("container exited %d", s.Code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("container did not exit")
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "from the imported image") {
		t.Errorf("container log %q", b)
	}
}
