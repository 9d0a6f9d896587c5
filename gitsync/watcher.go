package gitsync

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultInterval is the poll interval of a Watcher that sets none.
const DefaultInterval = 30 * time.Second

// debounce is how long the Watcher waits after a change in a local
// repository's refs before it syncs, so that the burst of events of one
// commit (lock file, rename, reflog) causes one sync.
const debounce = 20 * time.Millisecond

// Watcher syncs a Repo whenever it may have changed: at start, every
// Interval, within a second of a commit in a local repository (fsnotify on
// its refs), and at each Trigger (the webhook). It calls OnRevision only when
// the followed ref has moved, and OnError for each failed sync; after
// failures it retries with back-off (1 s doubling up to Interval), but a
// Trigger always syncs at once.
//
// Set the fields, then call Run once. Callbacks run on Run's goroutine, one
// at a time; Trigger may be called from any goroutine, before or during Run.
type Watcher struct {
	Repo     *Repo
	Interval time.Duration // default DefaultInterval
	Log      *slog.Logger
	// OnRevision receives each new revision. It may read the files; a slow
	// callback delays the next sync, never loses it.
	OnRevision func(ctx context.Context, rev *Revision)
	// OnError receives each sync error; the last revision stays valid.
	OnError func(err error)

	once    sync.Once
	trigger chan struct{}
}

func (w *Watcher) init() {
	w.once.Do(func() { w.trigger = make(chan struct{}, 1) })
}

// Trigger asks for a sync now. It never blocks; triggers that arrive while
// one is pending are merged into it.
func (w *Watcher) Trigger() {
	w.init()
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run syncs until ctx is done, then returns nil once every goroutine it
// started has exited.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Repo == nil {
		return errors.New("gitsync: Watcher has no Repo")
	}
	w.init()
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	src := w.Repo.Source().String()

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer wg.Wait() // runs after cancel
	defer cancel()

	if dir := w.Repo.Source().localDir(); dir != "" {
		if gitDir := findGitDir(dir); gitDir != "" {
			fw, err := fsnotify.NewWatcher()
			if err != nil {
				log.Warn("cannot watch local repository; polling only", "source", src, "err", err)
			} else {
				wg.Go(func() { w.watchFS(ctx, fw, gitDir, log) })
			}
		}
	}

	timer := time.NewTimer(0) // sync at start
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-w.trigger:
		}
		start := time.Now()
		rev, changed, err := w.Repo.Sync(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			next := backoff(failures, interval)
			log.Warn("git sync failed", "source", src, "failures", failures, "retry_in", next, "err", err)
			if w.OnError != nil {
				w.OnError(err)
			}
			timer.Reset(next)
			continue
		}
		failures = 0
		timer.Reset(interval)
		if !changed {
			continue
		}
		log.Info("git revision", "source", src, "ref", rev.Ref, "commit", rev.Commit.SHA,
			"files", len(rev.Files), "took", time.Since(start))
		if w.OnRevision != nil {
			w.OnRevision(ctx, rev)
		}
	}
}

// backoff is the wait after the n-th failure in a row: 1 s doubling, never
// more than interval.
func backoff(n int, interval time.Duration) time.Duration {
	d := time.Second
	for i := 1; i < n && d < interval; i++ {
		d *= 2
	}
	return min(d, interval)
}

// findGitDir returns the Git directory of the repository at dir: dir/.git
// (or where a .git file points), or dir itself when it is bare.
func findGitDir(dir string) string {
	dotgit := filepath.Join(dir, ".git")
	if fi, err := os.Stat(dotgit); err == nil {
		if fi.IsDir() {
			return dotgit
		}
		b, err := os.ReadFile(dotgit) // "gitdir: <path>" (worktrees)
		if err == nil {
			if p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: "); ok {
				if !filepath.IsAbs(p) {
					p = filepath.Join(dir, p)
				}
				return p
			}
		}
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		if fi, err := os.Stat(filepath.Join(dir, "refs")); err == nil && fi.IsDir() {
			return dir
		}
	}
	return ""
}

// watchFS triggers a sync when a ref of the local repository changes: a
// file under refs/, HEAD or packed-refs. It owns and closes fw.
func (w *Watcher) watchFS(ctx context.Context, fw *fsnotify.Watcher, gitDir string, log *slog.Logger) {
	defer fw.Close()
	add := func(dir string) {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if err := fw.Add(p); err != nil {
				log.Warn("cannot watch", "dir", p, "err", err)
			}
			return nil
		})
	}
	if err := fw.Add(gitDir); err != nil {
		log.Warn("cannot watch local repository; polling only", "dir", gitDir, "err", err)
		return
	}
	refs := filepath.Join(gitDir, "refs")
	add(refs)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-fw.Errors:
			if !ok {
				return
			}
			log.Warn("watching local repository", "dir", gitDir, "err", err)
		case ev, ok := <-fw.Events:
			if !ok {
				return
			}
			if strings.HasSuffix(ev.Name, ".lock") {
				continue
			}
			if filepath.Dir(ev.Name) == gitDir {
				if base := filepath.Base(ev.Name); base != "HEAD" && base != "packed-refs" && base != "refs" {
					continue
				}
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					add(ev.Name) // a new refs/heads/feature/ directory
				}
			}
			timer.Reset(debounce)
		case <-timer.C:
			w.Trigger()
		}
	}
}
