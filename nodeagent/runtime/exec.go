package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	v1 "github.com/containerd/cgroups/stats/v1"
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
)

// Exec runs cmd in the running container id, with the container's user, environment and
// working directory, and returns its exit code. stdin (may be nil) is closed for the
// process when it reaches EOF; with tty, stderr is merged into stdout. If ctx ends first
// the process is killed.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	ctx = r.ctx(ctx)
	if len(cmd) == 0 {
		return -1, fmt.Errorf("exec in container %s: empty command", id)
	}
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, classify(err))
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: spec: %w", id, classify(err))
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: task: %w", id, classify(err))
	}
	pspec := *spec.Process
	pspec.Args = cmd
	pspec.Terminal = tty

	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	// stdinDone is closed when stdin reaches EOF; the process's stdin is then closed, which
	// can only be done once the process exists (the copy may finish before that).
	stdinDone := make(chan struct{})
	var in io.Reader
	if stdin != nil {
		in = &eofHook{r: stdin, onEOF: func() { close(stdinDone) }}
	}
	opts := []cio.Opt{cio.WithStreams(in, stdout, stderr)}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	execID := "exec-" + randomHex(8)
	p, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(opts...))
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, classifyStart(cmd[0], err))
	}
	defer func() {
		_, _ = p.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	}()
	exitC, err := p.Wait(ctx)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, classify(err))
	}
	if err := p.Start(ctx); err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, classifyStart(cmd[0], err))
	}
	finished := make(chan struct{})
	defer close(finished)
	if stdin != nil {
		go func() {
			select {
			case <-stdinDone:
				_ = p.CloseIO(context.WithoutCancel(ctx), containerd.WithStdinCloser)
			case <-finished:
			}
		}()
	}
	select {
	case es := <-exitC:
		code, _, err := es.Result()
		if err != nil {
			return -1, fmt.Errorf("exec in container %s: %w", id, classify(err))
		}
		p.IO().Wait() // all output copied
		return int(code), nil
	case <-ctx.Done():
		_ = p.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		return -1, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
}

// eofHook calls onEOF once when r reaches EOF.
type eofHook struct {
	r     io.Reader
	once  sync.Once
	onEOF func()
}

func (e *eofHook) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		e.once.Do(e.onEOF)
	}
	return n, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Stats are a container's resource usage.
type Stats struct {
	CPUUsageNanos    uint64 // total CPU time consumed
	MemoryUsageBytes uint64 // memory usage, page cache excluded (working set)
}

// Stats reads the container's cgroup usage through containerd (cgroup v1 metrics).
func (r *Runtime) Stats(ctx context.Context, id string) (Stats, error) {
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of container %s: %w", id, classify(err))
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of container %s: %w", id, classify(err))
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of container %s: %w", id, classify(err))
	}
	if m.Data == nil {
		return Stats{}, fmt.Errorf("stats of container %s: no metrics", id)
	}
	var mv1 v1.Metrics
	if err := mv1.Unmarshal(m.Data.GetValue()); err != nil {
		return Stats{}, fmt.Errorf("stats of container %s: decode %s: %w", id, m.Data.GetTypeUrl(), err)
	}
	var s Stats
	if mv1.CPU != nil && mv1.CPU.Usage != nil {
		s.CPUUsageNanos = mv1.CPU.Usage.Total
	}
	if mv1.Memory != nil && mv1.Memory.Usage != nil {
		s.MemoryUsageBytes = mv1.Memory.Usage.Usage
		if inactive := mv1.Memory.TotalInactiveFile; inactive < s.MemoryUsageBytes {
			s.MemoryUsageBytes -= inactive
		}
	}
	return s, nil
}
