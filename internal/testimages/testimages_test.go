package testimages

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestImages(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("busybox-static is required in CI: %v", err)
		}
		t.Skipf("needs %s (Debian busybox-static): %v", BusyboxPath, err)
	}
	tests := []struct {
		ref            string
		wantEntrypoint []string
		wantCmd        []string
	}{
		{BusyboxRef, nil, []string{"sh"}},
		{TestappRef, []string{"/testapp"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			img := Image(t, tt.ref)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantEntrypoint, cf.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCmd, cf.Config.Cmd); diff != "" {
				t.Errorf("cmd (-want +got):\n%s", diff)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers = %d, %v; want 1", len(layers), err)
			}
		})
	}

	// Cached: a second call returns the same archive.
	if a, b := Busybox(t), Busybox(t); a != b {
		t.Errorf("Busybox paths differ: %s, %s", a, b)
	}
	dir := t.TempDir()
	imgs := Build(t, filepath.Join(dir, "images"))
	for _, p := range []string{imgs.Busybox, imgs.Testapp} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("archive %s: %v", p, err)
		}
	}
}
