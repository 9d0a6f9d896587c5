package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// ExitStatus is how a container's process ended. Err is set when the exit could not be
// observed (the container was removed meanwhile); Code is then meaningless.
type ExitStatus struct {
	Code      int
	ExitedAt  time.Time
	OOMKilled bool
	Err       error
}

// waiter watches one task until it exits; many callers share it. When the
// wait ends, ended, exited and status are set once, under the Runtime's mu,
// and the subscribers are told.
type waiter struct {
	id     string
	ended  bool
	exited bool // status holds the exit (false: the Runtime closed first)
	status ExitStatus
	subs   map[*exitSub]struct{}
}

// exitSub is one OnExit: f is called once.
type exitSub struct {
	once sync.Once
	f    func(ExitStatus, bool)
	stop func() bool // of the caller's context.AfterFunc
}

func (s *exitSub) call(st ExitStatus, exited bool) { s.once.Do(func() { s.f(st, exited) }) }

// Wait returns a channel that receives the container's exit status once and is then
// closed. It works on containers started by another process (adopted after an agent
// restart) and across containerd restarts. The channel is closed without a value if ctx
// ends or the Runtime is closed first.
func (r *Runtime) Wait(ctx context.Context, id string) (<-chan ExitStatus, error) {
	ch := make(chan ExitStatus, 1)
	err := r.OnExit(ctx, id, func(s ExitStatus, exited bool) {
		if exited {
			ch <- s
		}
		close(ch)
	})
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// OnExit calls f once: with the container's exit status and true when it
// exits, or with false if ctx ends or the Runtime is closed first. It is
// Wait without a goroutine for each caller (a node of fifty pods had a
// hundred only passing exits on). f runs on the Runtime's goroutine, or on
// the caller's when the container has exited already, and must not block.
func (r *Runtime) OnExit(ctx context.Context, id string, f func(ExitStatus, bool)) error {
	w, err := r.waiterFor(r.ctx(ctx), id)
	if err != nil {
		return err
	}
	s := &exitSub{f: f}
	s.stop = context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(w.subs, s)
		r.mu.Unlock()
		s.call(ExitStatus{}, false)
	})
	r.mu.Lock()
	switch {
	case w.ended:
		r.mu.Unlock()
		s.stop()
		s.call(w.status, w.exited)
		return nil
	case r.closed:
		r.mu.Unlock()
		s.stop()
		return fmt.Errorf("wait for container %s: %w", id, ErrClosed)
	}
	w.subs[s] = struct{}{}
	r.mu.Unlock()
	return nil
}

// end records how the wait on w ended and tells its subscribers.
func (r *Runtime) end(w *waiter, status ExitStatus, exited bool) {
	r.mu.Lock()
	if w.ended {
		r.mu.Unlock()
		return
	}
	w.ended, w.exited, w.status = true, exited, status
	subs := w.subs
	w.subs = nil
	r.mu.Unlock()
	for s := range subs {
		s.stop()
		s.call(status, exited)
	}
}

func (r *Runtime) waiterFor(ctx context.Context, id string) (*waiter, error) {
	r.mu.Lock()
	w, ok := r.waiters[id]
	r.mu.Unlock()
	if ok {
		return w, nil
	}
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("wait for container %s: %w", id, classify(err))
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("wait for container %s: task: %w", id, classify(err))
	}
	return r.watch(ctx, ctr, task)
}

// watch starts (or returns) the waiter of ctr's task. It subscribes to the task's exit
// before returning, so it may be called before task.Start.
func (r *Runtime) watch(ctx context.Context, ctr containerd.Container, task containerd.Task) (*waiter, error) {
	id := ctr.ID()
	cgroup := ""
	if s, err := ctr.Spec(ctx); err == nil && s.Linux != nil {
		cgroup = s.Linux.CgroupsPath
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.waiters[id]; ok {
		return w, nil
	}
	if r.closed {
		return nil, ErrClosed
	}
	wctx, cancel := r.lifetime()
	exitC, err := task.Wait(wctx)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &waiter{id: id, subs: map[*exitSub]struct{}{}}
	r.waiters[id] = w
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		r.runWaiter(wctx, w, exitC, cgroup)
	}()
	return w, nil
}

// forget drops the waiter of id (if it is w, or any if w is nil) and its OOM record.
func (r *Runtime) forget(id string, w *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.waiters[id]; ok && (w == nil || cur == w) {
		delete(r.waiters, id)
	}
	delete(r.ooms, id)
}

// runWaiter waits for the task's exit, re-subscribing when containerd restarts.
func (r *Runtime) runWaiter(ctx context.Context, w *waiter, exitC <-chan containerd.ExitStatus, cgroup string) {
	backoff := 100 * time.Millisecond
	for {
		var es containerd.ExitStatus
		select {
		case es = <-exitC:
		case <-r.alive.Done():
			r.end(w, ExitStatus{}, false)
			return
		}
		code, at, err := es.Result()
		if err == nil {
			r.end(w, ExitStatus{Code: int(code), ExitedAt: at, OOMKilled: r.oomKilled(w.id, cgroup)}, true)
			return
		}
		if ctx.Err() != nil {
			r.end(w, ExitStatus{}, false)
			return
		}
		r.log.Debug("lost the wait on a task; waiting again", "container", w.id, "err", err)
		// containerd restarted (or the connection broke): wait for it and wait again.
		for {
			select {
			case <-r.alive.Done():
				r.end(w, ExitStatus{}, false)
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			ctr, lerr := r.client.LoadContainer(ctx, w.id)
			var task containerd.Task
			if lerr == nil {
				task, lerr = ctr.Task(ctx, nil)
			}
			if lerr != nil && errdefs.IsNotFound(lerr) {
				r.end(w, ExitStatus{Code: -1, Err: errNotFound("container", w.id, lerr)}, true)
				return
			}
			if lerr == nil {
				exitC, lerr = task.Wait(ctx)
			}
			if lerr == nil {
				break
			}
		}
	}
}

// oomKilled tells whether the container's cgroup saw an OOM kill: a /tasks/oom event, or
// the kernel's own count (cgroup v1 memory.oom_control, or v2 memory.events), which
// survives events missed while containerd or this process was down.
func (r *Runtime) oomKilled(id, cgroup string) bool {
	r.mu.Lock()
	seen := r.ooms[id]
	r.mu.Unlock()
	if seen || cgroup == "" {
		return seen
	}
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cgroup, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", cgroup, "memory.events"),
		filepath.Join("/sys/fs/cgroup/unified", cgroup, "memory.events"),
	} {
		if n, ok := readCounter(f, "oom_kill"); ok && n > 0 {
			return true
		}
	}
	return false
}

// readCounter reads "key N" from a cgroup file.
func readCounter(file, key string) (uint64, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// watchOOM records /tasks/oom events of the namespace until Close, re-subscribing when
// containerd restarts.
func (r *Runtime) watchOOM() {
	for {
		ctx, cancel := r.lifetime()
		evC, errC := r.client.Subscribe(ctx, `topic=="/tasks/oom"`)
	recv:
		for {
			select {
			case <-r.alive.Done():
				cancel()
				return
			case err := <-errC:
				if err != nil {
					r.log.Debug("OOM event subscription ended", "err", err)
				}
				break recv
			case env := <-evC:
				if env == nil || env.Namespace != r.namespace || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				if oom, ok := v.(*apievents.TaskOOM); ok {
					r.log.Info("container OOM", "container", oom.ContainerID)
					r.mu.Lock()
					r.ooms[oom.ContainerID] = true
					r.mu.Unlock()
				}
			}
		}
		cancel()
		select {
		case <-r.alive.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
