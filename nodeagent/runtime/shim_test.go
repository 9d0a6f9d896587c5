package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// shimPIDs lists the runc v2 shims serving the containerd at socket.
func shimPIDs(t *testing.T, socket string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == socket {
				out = append(out, filepath.Base(filepath.Dir(p)))
			}
		}
	}
	return out
}

func TestShimsShared(t *testing.T) {
	rt := needRuntime(t)
	n := 2*shimGroups + 2
	for range n {
		start(t, rt, newSpec(t, rt, busybox, "sleep", "1000"))
	}
	pids := shimPIDs(t, env.daemon.Socket())
	if len(pids) == 0 || len(pids) > shimGroups {
		t.Fatalf("%d containers run under %d shims (%v), want 1 to %d", n, len(pids), pids, shimGroups)
	}
}

// TestShimJoinWhileLastLeaves starts containers of one pod (so one shim group)
// while the group's only other container is being removed: a start that
// joins the shim as it shuts down must still succeed.
func TestShimJoinWhileLastLeaves(t *testing.T) {
	rt := needRuntime(t)
	pod := baseSpec(t, busybox, "sleep", "1000")
	spec := func(i int) ContainerSpec {
		s := pod
		s.ContainerName = fmt.Sprintf("c%d", i)
		s.LogPath = filepath.Join(t.TempDir(), "0.log")
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prev := start(t, rt, spec(0))
	for i := 1; i <= 12; i++ {
		var wg sync.WaitGroup
		var rmErr error
		wg.Go(func() { rmErr = rt.Remove(ctx, prev.ID) })
		c, err := rt.Start(ctx, spec(i))
		wg.Wait()
		if rmErr != nil {
			t.Fatalf("remove %s: %v", prev.ID, rmErr)
		}
		if err != nil {
			t.Fatalf("start container %d while the shim's last one goes: %v", i, err)
		}
		prev = c
	}
	if err := rt.Remove(ctx, prev.ID); err != nil {
		t.Fatal(err)
	}
}

// TestShimConcurrentRemoves removes the containers of one pod (one shim
// group) all at once, as the agent stops a pod: the shim exits when the last
// goes, possibly while another's delete still talks to it. Every removal
// must succeed and leave nothing.
func TestShimConcurrentRemoves(t *testing.T) {
	rt := needRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 6 {
		pod := baseSpec(t, busybox, "sleep", "1000")
		var ids []string
		for i := range 3 {
			s := pod
			s.ContainerName = fmt.Sprintf("c%d", i)
			s.LogPath = filepath.Join(t.TempDir(), "0.log")
			ids = append(ids, start(t, rt, s).ID)
		}
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() { errs[i] = rt.Remove(ctx, id) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: remove %s: %v", round, ids[i], err)
			}
		}
		infos, err := rt.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range infos {
			for _, id := range ids {
				if in.ID == id {
					t.Errorf("round %d: %s left behind (%s)", round, id, in.State)
				}
			}
		}
	}
}
