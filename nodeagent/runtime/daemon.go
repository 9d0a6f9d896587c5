package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ContainerdBinary is the containerd executable StartDaemon runs.
const ContainerdBinary = "/usr/bin/containerd"

// maxSocketPath is the longest socket path used under the data directory; longer ones move
// to /run/keelson/<hash>/ (sun_path is 108 bytes, and containerd appends ".ttrpc").
const maxSocketPath = 90

// Daemon is a private containerd started and supervised by StartDaemon: if it dies it is
// restarted with back-off until Stop. Its methods are safe for concurrent use.
type Daemon struct {
	dir    string
	config string
	socket string
	log    *slog.Logger

	stopOnce sync.Once
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when the supervisor has exited

	mu       sync.Mutex
	cmd      *exec.Cmd // current process, nil between restarts
	restarts int
}

// StartDaemon writes a containerd configuration under dir (root dir/root, state dir/state,
// socket dir/containerd.sock or /run/keelson/<hash>/containerd.sock if dir is long, CRI
// disabled, no metrics or debug listeners), starts containerd, waits until its socket
// answers and supervises it until Stop. Containers outlive the daemon: their shims keep
// running and a restarted containerd reconnects to them.
//
// A containerd left running from an earlier StartDaemon on the same dir (an agent killed
// with SIGKILL) is stopped first.
func StartDaemon(ctx context.Context, dir string, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("containerd dir %s: %w", dir, err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "root"), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("containerd dir: %w", err)
		}
	}
	socket := DaemonSocket(dir)
	if err := os.MkdirAll(filepath.Dir(socket), 0o711); err != nil {
		return nil, fmt.Errorf("containerd socket dir: %w", err)
	}
	d := &Daemon{
		dir:    dir,
		config: filepath.Join(dir, "config.toml"),
		socket: socket,
		log:    log.With("component", "containerd"),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := os.WriteFile(d.config, []byte(d.configTOML()), 0o644); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	d.killStale()

	started := make(chan error, 1)
	go d.supervise(started)
	select {
	case err := <-started:
		if err != nil {
			d.Stop()
			return nil, err
		}
	case <-ctx.Done():
		d.Stop()
		return nil, fmt.Errorf("start containerd: %w", ctx.Err())
	}
	return d, nil
}

// Socket is the containerd gRPC socket path.
func (d *Daemon) Socket() string { return d.socket }

// Dir is the directory StartDaemon was given.
func (d *Daemon) Dir() string { return d.dir }

// PID is the process id of the current containerd, or 0 while it is being restarted.
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Restarts is how many times the supervisor has restarted containerd.
func (d *Daemon) Restarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.restarts
}

// Stop stops supervising and terminates containerd: SIGTERM, then SIGKILL after 10 s.
// Running containers are not touched (their shims keep running). Stop is idempotent.
func (d *Daemon) Stop() error {
	d.stopOnce.Do(func() { close(d.stop) })
	<-d.done
	// What it kept under /run/keelson goes with it: its sockets, and the
	// directories of its socket and of runc's state when they are empty
	// (they are not while containers it ran keep running).
	for _, f := range []string{d.socket, d.socket + ".ttrpc"} {
		_ = os.Remove(f)
	}
	if dir := filepath.Dir(d.socket); strings.HasPrefix(dir, "/run/keelson/") {
		_ = os.Remove(dir)
	}
	root := RuncRoot(d.socket)
	if entries, err := os.ReadDir(root); err == nil {
		for _, e := range entries {
			_ = os.Remove(filepath.Join(root, e.Name())) // runc's directory of a containerd namespace
		}
	}
	if err := os.Remove(root); err == nil || errors.Is(err, fs.ErrNotExist) {
		// No container is left: a shim still serving this containerd has
		// nothing to serve.
		if pids := stopIdleShims(d.socket); len(pids) > 0 {
			d.log.Warn("stopped shims left without containers", "pids", pids)
		}
	}
	return nil
}

func (d *Daemon) configTOML() string {
	q := strconv.Quote
	return fmt.Sprintf(`# Written by keelson; rewritten at every start.
version = 2
root = %s
state = %s
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %s

[ttrpc]
  address = %s

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %s
`, q(filepath.Join(d.dir, "root")), q(filepath.Join(d.dir, "state")), q(d.socket),
		q(d.socket+".ttrpc"), q(filepath.Join(d.dir, "opt")))
}

func (d *Daemon) pidFile() string { return filepath.Join(d.dir, "containerd.pid") }

// killStale stops a containerd that an earlier process started with this configuration.
func (d *Daemon) killStale() {
	b, err := os.ReadFile(d.pidFile())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	// A process that is still in exec shows an empty command line for a
	// moment (the kernel sets up the new one after the exec has begun): the
	// pid file is written right after containerd starts, and the agent that
	// wrote it may have been killed just then.
	var cmdline []byte
	for try := 0; try < 50; try++ {
		if cmdline, err = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || len(cmdline) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || !strings.Contains(string(cmdline), d.config) {
		return
	}
	d.log.Warn("stopping containerd left from an earlier run", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// containerd answers SIGTERM only once it has started its server: one
	// still starting is killed after 5 s (by the clock, however slowly this
	// loop runs on a loaded machine).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	d.log.Warn("containerd left from an earlier run did not stop; killing it", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// supervise runs containerd until Stop, restarting it when it exits. The goroutine keeps
// its OS thread locked for its whole life, so that Pdeathsig (which follows the thread
// that forked the child) stops containerd when this process dies, and only then.
func (d *Daemon) supervise(started chan<- error) {
	goruntime.LockOSThread() // never unlocked: the thread exits with the goroutine
	defer close(d.done)
	backoff := 200 * time.Millisecond
	first := true
	for {
		cmd, exited, err := d.startOnce()
		if first {
			started <- err
			first = false
			if err != nil {
				return
			}
		}
		runningSince := time.Now()
		if err != nil {
			d.log.Error("containerd failed to start", "err", err)
		} else {
			select {
			case <-d.stop:
				d.terminate(cmd, exited)
				return
			case werr := <-exited:
				d.log.Error("containerd exited; restarting", "err", werr, "backoff", backoff)
			}
		}
		d.mu.Lock()
		d.cmd = nil
		d.mu.Unlock()
		if time.Since(runningSince) > 30*time.Second {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-d.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		d.mu.Lock()
		d.restarts++
		d.mu.Unlock()
	}
}

// startOnce starts containerd and waits for its socket to answer. exited receives the
// result of cmd.Wait.
func (d *Daemon) startOnce() (*exec.Cmd, <-chan error, error) {
	_ = os.Remove(d.socket)
	cmd := exec.Command(ContainerdBinary, "--config", d.config)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", ContainerdBinary, err)
	}
	_ = os.WriteFile(d.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	d.mu.Lock()
	d.cmd = cmd
	d.mu.Unlock()
	d.log.Info("containerd started", "pid", cmd.Process.Pid, "socket", d.socket)

	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		d.pipeLog(stderr)
	}()
	exited := make(chan error, 1)
	go func() {
		<-logsDone // Wait closes the pipe; read it to the end first
		exited <- cmd.Wait()
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("unix", d.socket, time.Second)
		if err == nil {
			c.Close()
			return cmd, exited, nil
		}
		select {
		case werr := <-exited:
			return nil, nil, fmt.Errorf("containerd exited before serving %s: %v", d.socket, werr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return nil, nil, fmt.Errorf("containerd did not serve %s within 30s", d.socket)
		}
	}
}

func (d *Daemon) terminate(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		d.log.Warn("containerd did not stop within 10s; killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
	_ = os.Remove(d.pidFile())
	d.mu.Lock()
	d.cmd = nil
	d.mu.Unlock()
	d.log.Info("containerd stopped")
}

// pipeLog forwards containerd's logrus lines to the logger: errors as warnings (containerd
// reports many benign ones, such as shims going away), the rest at debug.
func (d *Daemon) pipeLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=error") || strings.Contains(line, "level=fatal"):
			d.log.Warn("containerd", "line", line)
		default:
			d.log.Debug("containerd", "line", line)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		d.log.Debug("containerd log pipe", "err", err)
	}
}
