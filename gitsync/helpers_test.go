package gitsync

import (
	"bytes"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// logBuffer collects log output for assertions and shows it on failure.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// open opens src with a new cache directory.
func open(t testing.TB, src Source) (*Repo, *logBuffer) {
	t.Helper()
	log, lb := testLogger(t)
	r, err := Open(src, filepath.Join(t.TempDir(), "cache"), log)
	if err != nil {
		t.Fatalf("Open(%s): %v", src, err)
	}
	return r, lb
}

// contents maps each file of rev to its content ("-> target" for symlinks).
func contents(t testing.TB, rev *Revision) map[string]string {
	t.Helper()
	m := make(map[string]string, len(rev.Files))
	for _, f := range rev.Files {
		if f.Mode&fs.ModeSymlink != 0 {
			m[f.Path] = "-> " + f.Target
			continue
		}
		b, err := f.Read()
		if err != nil {
			t.Fatalf("read %s: %v", f.Path, err)
		}
		if int64(len(b)) != f.Size {
			t.Errorf("%s: Size %d, read %d bytes", f.Path, f.Size, len(b))
		}
		m[f.Path] = string(b)
	}
	return m
}

// mustSync syncs and checks that the result is commit want and changed
// as wanted.
func mustSync(t testing.TB, r *Repo, want string, wantChanged bool) *Revision {
	t.Helper()
	rev, changed, err := r.Sync(t.Context())
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if rev.Commit.SHA != want || changed != wantChanged {
		t.Fatalf("Sync = %s changed=%v, want %s changed=%v", rev.Commit.SHA, changed, want, wantChanged)
	}
	return rev
}

// syncErr syncs, expecting an error that contains every one of wants.
func syncErr(t testing.TB, r *Repo, wants ...string) error {
	t.Helper()
	rev, changed, err := r.Sync(t.Context())
	if err == nil {
		t.Fatalf("Sync = %s changed=%v, want an error", rev.Commit.SHA, changed)
	}
	t.Logf("Sync error (as wanted): %v", err)
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Sync error %q does not contain %q", err, w)
		}
	}
	return err
}
