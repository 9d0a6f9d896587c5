package gittest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// RequireRoot skips the test when not running as root, with why as the
// reason, except in CI (CI=true), where it fails instead: privileged tests
// must run there.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(tb, "needs root: "+why)
	}
}

func skipOrFail(tb testing.TB, reason string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s (not skipped: CI=true)", reason)
	}
	tb.Skip(reason)
}

// RequireBinary skips (fails in CI) when path is not an executable.
func RequireBinary(tb testing.TB, path string) {
	tb.Helper()
	if _, err := exec.LookPath(path); err != nil {
		skipOrFail(tb, fmt.Sprintf("%s not installed: %v", path, err))
	}
}

// freePort returns a TCP port on host that was free a moment ago.
func freePort(tb testing.TB, host string) int {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening polls addr until it accepts connections, the process exits
// (exited is closed) or 10 s pass.
func waitListening(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("server exited")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not listening after 10s", addr)
}

// process is a server process run in its own process group, so that Stop
// also ends the children it forked for connections.
type process struct {
	tb     testing.TB
	name   string
	args   []string
	addr   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	output *bytes.Buffer
}

func (p *process) start() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	var lastErr error
	for range 3 { // the port may be taken by a TIME_WAIT or a racing test
		cmd := exec.Command(p.args[0], p.args[1:]...)
		cmd.Env = append(os.Environ(), GitEnv()...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = &lockedWriter{w: out}, &lockedWriter{w: out}
		if err := cmd.Start(); err != nil {
			p.tb.Fatalf("start %s: %v", p.name, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if err := waitListening(p.addr, exited); err != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			lastErr = fmt.Errorf("%s on %s: %v\n%s", p.name, p.addr, err, out.String())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p.cmd, p.exited, p.output = cmd, exited, out
		return
	}
	p.tb.Fatal(lastErr)
}

func (p *process) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	// Children serving connections are in the group; make sure none is left.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd = nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// GitDaemon is `git daemon` serving every repository under Root over
// git://127.0.0.1:PORT/.
type GitDaemon struct {
	Root string
	Addr string
	p    *process
}

// StartGitDaemon serves the repositories under root (a new temporary
// directory when ""), until the test ends.
func StartGitDaemon(tb testing.TB, root string) *GitDaemon {
	tb.Helper()
	RequireBinary(tb, "git")
	if root == "" {
		root = tb.TempDir()
	}
	port := freePort(tb, "127.0.0.1")
	d := &GitDaemon{Root: root, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	d.p = &process{tb: tb, name: "git daemon", addr: d.Addr, args: []string{
		"git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
		"--listen=127.0.0.1", "--port=" + strconv.Itoa(port), "--base-path=" + root, root,
	}}
	d.p.start()
	tb.Cleanup(d.Stop)
	return d
}

// URL is the git:// URL of the repository named name under Root.
func (d *GitDaemon) URL(name string) string { return "git://" + d.Addr + "/" + name }

// Stop stops the server (idempotent); Start starts it again on the same port.
func (d *GitDaemon) Stop()  { d.p.stop() }
func (d *GitDaemon) Start() { d.p.tb.Helper(); d.p.start() }

// HTTPServer is `git http-backend` (smart HTTP) behind net/http/cgi, serving
// the repositories under Root at http://127.0.0.1:PORT/ with basic auth.
type HTTPServer struct {
	Root     string
	Addr     string
	User     string
	Password string

	// Counters of requests, to tell a ref listing from a fetch.
	InfoRefs   atomic.Int64 // GET .../info/refs (ref advertisement)
	UploadPack atomic.Int64 // POST .../git-upload-pack (fetch)
	Refused    atomic.Int64 // requests refused for bad credentials

	tb      testing.TB
	handler http.Handler
	mu      sync.Mutex
	srv     *http.Server
	wg      sync.WaitGroup
}

// StartHTTPServer serves the repositories under root (a new temporary
// directory when "") with basic auth user:password (none when user is "").
func StartHTTPServer(tb testing.TB, root, user, password string) *HTTPServer {
	tb.Helper()
	RequireBinary(tb, "git")
	if root == "" {
		root = tb.TempDir()
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		tb.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	RequireBinary(tb, backend)
	s := &HTTPServer{Root: root, User: user, Password: password, tb: tb}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(tb, "127.0.0.1")))
	cgiHandler := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env:  append([]string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}, GitEnv()...),
	}
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.User != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.User)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(s.Password)) != 1 {
				s.Refused.Add(1)
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs"):
			s.InfoRefs.Add(1)
		case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			s.UploadPack.Add(1)
		}
		cgiHandler.ServeHTTP(w, r)
	})
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the http:// URL of the repository named name under Root (no
// credentials in it).
func (s *HTTPServer) URL(name string) string { return "http://" + s.Addr + "/" + name }

// Start starts the server (again) on its port.
func (s *HTTPServer) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	var l net.Listener
	var err error
	for range 50 { // the port stays busy for a moment after Stop
		if l, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.tb.Fatalf("http git server: %v", err)
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(l)
	}()
}

// Stop stops the server and closes its connections (idempotent).
func (s *HTTPServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	s.wg.Wait()
	s.srv = nil
}
