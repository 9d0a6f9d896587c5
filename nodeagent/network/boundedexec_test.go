package network

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

// countingExec stands for the plugin runner under boundedExec: it counts
// how many runs are in progress at once.
type countingExec struct {
	invoke.Exec
	now, most atomic.Int32
}

func (e *countingExec) ExecPlugin(ctx context.Context, _ string, _ []byte, _ []string) ([]byte, error) {
	n := e.now.Add(1)
	defer e.now.Add(-1)
	for {
		m := e.most.Load()
		if n <= m || e.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	return []byte("{}"), nil
}

func TestBoundedExec(t *testing.T) {
	inner := &countingExec{}
	e := newBoundedExec(inner, 3)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if _, err := e.ExecPlugin(context.Background(), "bridge", nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := inner.most.Load(); got != 3 {
		t.Errorf("at most %d runs at once, want 3", got)
	}

	// A caller whose context ends while every slot is taken gives up.
	for range 3 {
		e.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.ExecPlugin(ctx, "bridge", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with every slot taken: %v, want the context's deadline", err)
	}
}
