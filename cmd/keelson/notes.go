package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/store"
)

// noteWriter writes what became of each commit into the repository's notes
// (refs/notes/keelson, --write-notes): it follows the store's revision
// records with a blocking read and writes a note for each commit whose
// outcome is final (Healthy, Degraded, Superseded, RolledBack) or that was
// rejected, once. It runs on its own goroutine and only reads the store, so
// it never holds up the reconcile loop or the applier; a failed write is
// logged and retried with back-off.
type noteWriter struct {
	st    *store.Store
	notes *gitsync.Notes
	log   *slog.Logger
	// written maps a commit to the note text this process wrote for it, or
	// to "" when the commit had a Keelson note when the writer started:
	// those are never overwritten (after a restart the first revision
	// applied lists every workload, which says less than the note of the
	// run that saw the commit arrive).
	written map[string]string
	// minBackoff and maxBackoff bound the wait before retrying a failure.
	minBackoff, maxBackoff time.Duration
}

func newNoteWriter(st *store.Store, notes *gitsync.Notes, log *slog.Logger) *noteWriter {
	return &noteWriter{st: st, notes: notes, log: log, written: map[string]string{}, minBackoff: time.Second, maxBackoff: 5 * time.Minute}
}

// run writes notes until ctx ends.
func (w *noteWriter) run(ctx context.Context) {
	backoff := w.minBackoff
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.maxBackoff)
		return true
	}
	// Learn which commits have a note already.
	for {
		err := w.notes.Refresh(ctx)
		var existing map[string]string
		if err == nil {
			existing, err = w.notes.Read(ctx)
		}
		if err == nil {
			for sha, text := range existing {
				if _, ok := gitsync.ParseOutcomeNote(text); ok {
					w.written[sha] = ""
				}
			}
			break
		}
		w.log.Warn("reading the repository's notes failed; retrying", "err", err, "retry", backoff)
		if !wait() {
			return
		}
	}
	backoff = w.minBackoff
	var index uint64
	for {
		var (
			pending map[string]string
			idx     uint64
		)
		err := w.st.Blocking(ctx, index, 5*time.Minute, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
			revs, err := snap.Revisions(ws, 0)
			pending = notesToWrite(revs, w.written)
			idx = snap.Index(ws, store.TableRevisions)
			return idx, err
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.log.Error("reading revisions for notes failed", "err", err)
			if !wait() {
				return
			}
			continue
		}
		if len(pending) == 0 {
			index = idx
			continue
		}
		if err := w.notes.Add(ctx, pending); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("writing notes failed; retrying", "commits", len(pending), "err", err, "retry", backoff)
			if !wait() {
				return
			}
			index = 0 // try again without waiting for a new revision
			continue
		}
		for sha, text := range pending {
			w.written[sha] = text
			w.log.Info("wrote the commit's outcome in its note", "sha", sha, "ref", gitsync.NotesRef.String(), "note", strings.TrimSpace(strings.SplitN(text, "\n", 2)[0]))
		}
		backoff = w.minBackoff
		index = idx
	}
}

// notesToWrite is the notes to write for revisions (newest first): the
// newest record of each commit decides, and a commit gets a note when its
// outcome is final and it has none, or a different one this process wrote.
func notesToWrite(revs []*store.Revision, written map[string]string) map[string]string {
	out := map[string]string{}
	seen := map[string]bool{}
	for _, rev := range revs {
		if seen[rev.SHA] {
			continue
		}
		seen[rev.SHA] = true
		n, ok := outcomeNote(rev)
		if !ok {
			continue
		}
		text := n.String()
		if prev, had := written[rev.SHA]; had && (prev == "" || prev == text) {
			continue
		}
		out[rev.SHA] = text
	}
	return out
}

// maxNoteErrors bounds the errors a rejected commit's note lists.
const maxNoteErrors = 10

// outcomeNote is the note of a revision whose outcome is final.
func outcomeNote(rev *store.Revision) (gitsync.OutcomeNote, bool) {
	switch {
	case rev.Status == store.RevisionFailed:
		n := gitsync.OutcomeNote{Health: "Rejected"}
		for i, is := range rev.Errors {
			if i == maxNoteErrors {
				n.Errors = append(n.Errors, fmt.Sprintf("… and %d more", len(rev.Errors)-maxNoteErrors))
				break
			}
			n.Errors = append(n.Errors, is.String())
		}
		if len(n.Errors) > 0 {
			n.Summary = "— " + n.Errors[0]
		}
		return n, true
	case rev.Status != store.RevisionApplied || !rev.Health.Final():
		return gitsync.OutcomeNote{}, false
	}
	n := gitsync.OutcomeNote{Health: string(rev.Health)}
	for _, r := range rev.Rollouts {
		o := gitsync.NoteObject{Object: r.Object, Outcome: string(r.Outcome), Images: r.Images}
		if r.Outcome != store.RolloutHealthy {
			o.Reason = r.Reason
		}
		n.Objects = append(n.Objects, o)
		if n.Summary == "" && r.Outcome == rev.Health && r.Reason != "" && rev.Health != store.RolloutHealthy {
			n.Summary = "— " + r.Object + ": " + r.Reason
		}
	}
	if rev.Health == store.RolloutHealthy {
		n.Summary = timings(rev)
	}
	return n, true
}

// timings says how long each step of a revision took from the commit being
// fetched: "(applied 12ms, scheduled 210ms, started 640ms, ready 1.4s
// after fetch)"; empty when unknown.
func timings(rev *store.Revision) string {
	if rev.FetchedAt.IsZero() {
		return ""
	}
	latest := func(f func(store.Rollout) time.Time) time.Time {
		var m time.Time
		for _, r := range rev.Rollouts {
			t := f(r)
			if t.IsZero() {
				return time.Time{}
			}
			if t.After(m) {
				m = t
			}
		}
		return m
	}
	var steps []string
	for _, s := range []struct {
		name string
		at   time.Time
	}{
		{"applied", rev.AppliedAt},
		{"scheduled", latest(func(r store.Rollout) time.Time { return r.Scheduled })},
		{"started", latest(func(r store.Rollout) time.Time { return r.Started })},
		{"ready", latest(func(r store.Rollout) time.Time { return r.Ready })},
	} {
		if !s.at.IsZero() {
			steps = append(steps, s.name+" "+shortDuration(s.at.Sub(rev.FetchedAt)))
		}
	}
	if len(steps) == 0 {
		return ""
	}
	return "(" + strings.Join(steps, ", ") + " after fetch)"
}

// shortDuration rounds d for people: 420µs, 12ms, 1.4s, 2m5s.
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
