package runtime

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/testimages"
	"github.com/sirupsen/logrus"
)

const testNamespace = "keelson-test"

// env is the package's private containerd, started by TestMain when running as root.
var env struct {
	skip   string // why root tests cannot run
	dir    string
	daemon *Daemon
	rt     *Runtime
	log    *slog.Logger
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	level := slog.LevelError
	if os.Getenv("KEELSON_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	// The containerd client logs through logrus' standard logger; keep tests quiet.
	logrus.SetLevel(logrus.WarnLevel)
	env.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if reason := rootTestsUnavailable(); reason != "" {
		env.skip = reason
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "krt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.dir = dir
	defer cleanupDir(dir)
	d, err := StartDaemon(ctx, dir, env.log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start containerd:", err)
		return 1
	}
	env.daemon = d
	defer d.Stop()
	rt, err := Connect(ctx, d.Socket(), testNamespace, env.log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 1
	}
	env.rt = rt
	defer rt.Close()
	for _, build := range []func() (string, error){testimages.BusyboxArchive, testimages.TestappArchive} {
		p, err := build()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := rt.ImportArchive(ctx, p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	// Remove whatever a failed test left.
	if infos, err := rt.List(ctx); err == nil {
		for _, i := range infos {
			if err := rt.Remove(ctx, i.ID); err != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", err)
			}
		}
	}
	return code
}

func rootTestsUnavailable() string {
	if os.Geteuid() != 0 {
		return "needs root to run containerd"
	}
	for _, bin := range []string{ContainerdBinary, "/usr/sbin/runc", testimages.BusyboxPath} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Sprintf("needs %s: %v", bin, err)
		}
	}
	return ""
}

// privateDaemon starts a containerd of the test's own in a new temporary
// directory (named from prefix), stopped and removed when the test ends.
func privateDaemon(t *testing.T, prefix string) (*Daemon, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDir(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, dir, env.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	return d, dir
}

// cleanupDir unmounts anything left under dir and removes it.
func cleanupDir(dir string) {
	for _, m := range mountsUnder(dir) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = os.RemoveAll(dir)
}

func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out
}

// needRuntime skips (or, in CI, fails) a test that needs the private containerd.
func needRuntime(t testing.TB) *Runtime {
	t.Helper()
	if env.skip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("root test cannot run in CI: %s", env.skip)
		}
		t.Skip(env.skip)
	}
	return env.rt
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newSpec is a spec for a fresh pod with a log file in a temp dir; the container is
// removed at the end of the test.
func newSpec(t testing.TB, rt *Runtime, image string, command ...string) ContainerSpec {
	t.Helper()
	s := baseSpec(t, image, command...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.Remove(ctx, s.ID()); err != nil {
			t.Errorf("remove %s: %v", s.ID(), err)
		}
	})
	return s
}

// baseSpec is a spec for a fresh pod with a log file in a temp dir.
func baseSpec(t testing.TB, image string, command ...string) ContainerSpec {
	t.Helper()
	return ContainerSpec{
		PodUID:        randomID(),
		PodName:       strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
		PodNamespace:  "default",
		ContainerName: "main",
		Image:         image,
		Command:       command,
		LogPath:       filepath.Join(t.TempDir(), "main", "0.log"),
	}
}

func start(t testing.TB, rt *Runtime, s ContainerSpec) *Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := rt.Start(ctx, s)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

func waitExit(t testing.TB, rt *Runtime, id string, timeout time.Duration) ExitStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ch, err := rt.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait %s: %v", id, err)
	}
	es, ok := <-ch
	if !ok {
		t.Fatalf("container %s did not exit within %v", id, timeout)
	}
	if es.Err != nil {
		t.Fatalf("Wait %s: %v", id, es.Err)
	}
	return es
}

// run starts s, waits for its exit and returns the status and the log.
func run(t testing.TB, rt *Runtime, s ContainerSpec) (ExitStatus, string) {
	t.Helper()
	c := start(t, rt, s)
	es := waitExit(t, rt, c.ID, 30*time.Second)
	// The shim copies the last output to the log file concurrently with
	// reporting the exit: read until the file has been the same, and not
	// empty, for 100 ms (or 2 s have passed).
	log := readLog(t, s.LogPath)
	stable := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && (stable < 2 || log == ""); {
		time.Sleep(50 * time.Millisecond)
		next := readLog(t, s.LogPath)
		if next == log {
			stable++
		} else {
			stable, log = 0, next
		}
	}
	return es, log
}

func readLog(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
