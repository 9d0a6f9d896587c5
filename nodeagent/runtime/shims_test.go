package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/testimages"
)

func TestIsShimOf(t *testing.T) {
	const sock = "/var/lib/keelson/containerd/containerd.sock"
	for _, tc := range []struct {
		cmdline string
		want    bool
	}{
		{"/usr/bin/containerd-shim-runc-v2\x00-namespace\x00keelson\x00-id\x00x\x00-address\x00" + sock + "\x00", true},
		{"/usr/bin/containerd-shim-runc-v2\x00-namespace\x00keelson\x00-address\x00/run/containerd/containerd.sock\x00", false},
		{"/usr/bin/containerd\x00--address\x00" + sock + "\x00", false},
		{"/usr/bin/containerd-shim-runc-v2\x00-address\x00", false},
		{"", false},
	} {
		if got := isShimOf([]byte(tc.cmdline), sock); got != tc.want {
			t.Errorf("isShimOf(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}

func TestUnixSocketPaths(t *testing.T) {
	table := `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/containerd/s/abc
0000000000000000: 00000002 00000000 00010000 0001 01 4243 @/containerd-shim/x.sock
0000000000000000: 00000003 00000000 00000000 0001 03 4244
0000000000000000: 00000002 00000000 00010000 0001 01 4245 /run/other.sock
`
	got := unixSocketPaths([]byte(table), map[string]bool{"4242": true, "4243": true, "4244": true})
	if want := []string{"/run/containerd/s/abc"}; !slices.Equal(got, want) {
		t.Errorf("paths %q, want %q (path sockets of those inodes only)", got, want)
	}
}

// TestStopStopsIdleShims: a shim whose last container went while its
// containerd was down waits for good; Stop stops it once no container is
// left, and leaves a shim alone while its container runs.
func TestStopStopsIdleShims(t *testing.T) {
	needRuntime(t)
	d, _ := privateDaemon(t, "kis")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	socket := d.Socket()
	runcRoot := filepath.Join(RuncRoot(socket), testNamespace)
	rt, err := Connect(ctx, socket, testNamespace, env.log)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.ImportArchive(ctx, testimages.Busybox(t)); err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, busybox, "sleep", "600")
	c := start(t, rt, s)
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(runcRoot, c.ID)); err == nil { // runc would make its root again
			_ = exec.Command("/usr/sbin/runc", "--root", runcRoot, "delete", "--force", c.ID).Run()
		}
		stopIdleShims(socket)
		_ = os.Remove(runcRoot)
		_ = os.Remove(filepath.Dir(runcRoot))
		RemoveEmptyCgroup(rt.cgroupParent()) // Close left it: the container was still there
	})
	shims := shimsOf(socket)
	if len(shims) != 1 {
		t.Fatalf("shims serving %s: %v, want one", socket, shims)
	}
	shim := shims[0]
	sockets := listeningSockets(shim)
	if len(sockets) == 0 {
		t.Fatalf("shim %d listens on no socket", shim)
	}

	rt.Close()
	d.Stop()
	if syscall.Kill(shim, 0) != nil {
		t.Fatalf("Stop stopped shim %d while its container runs", shim)
	}

	// The container goes behind the back of the stopped containerd, as when
	// containerd stops between a task's delete and the shim's shutdown.
	if out, err := exec.Command("/usr/sbin/runc", "--root", runcRoot, "delete", "--force", c.ID).CombinedOutput(); err != nil {
		t.Fatalf("runc delete: %v: %s", err, out)
	}
	d.Stop()
	eventually(t, 10*time.Second, fmt.Sprintf("shim %d stopped", shim), func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", shim))
		return err != nil || len(shimsOf(socket)) == 0
	})
	for _, s := range sockets {
		if _, err := os.Stat(s); err == nil {
			t.Errorf("the stopped shim's socket %s is still there", s)
		}
	}
}

// shimsOf returns the PIDs of the shims serving the containerd of socket.
func shimsOf(socket string) []int {
	var out []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscan(p.Name(), &pid); err != nil {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && isShimOf(b, socket) {
			out = append(out, pid)
		}
	}
	return out
}
