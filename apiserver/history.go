package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/store"
)

// HistorySource answers history questions from Git (gitsync.History and
// gitsync.Notes, joined in cmd/keelson).
type HistorySource interface {
	// ObjectHistory lists the commits that changed the object key
	// declared in file, newest first, at most limit (all when 0), from
	// start (a commit SHA; "" is the synced commit).
	ObjectHistory(ctx context.Context, start, file, key string, limit int) (*gitsync.ObjectLog, error)
	// Notes are the commits' notes in refs/notes/keelson, SHA → text.
	Notes(ctx context.Context) (map[string]string, error)
}

// history serves GET /v1/history/{kind}/{namespace}/{name}?limit=N.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	if s.opts.History == nil {
		writeError(w, r, http.StatusNotImplemented, fmt.Errorf("this server does not read Git history"))
		return
	}
	key := r.PathValue("kind") + "/" + r.PathValue("namespace") + "/" + r.PathValue("name")
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			writeError(w, r, http.StatusBadRequest, fmt.Errorf("query parameter limit: %q is not a count", v))
			return
		}
	}
	var (
		obj     *store.Object
		revs    []*store.Revision
		applied *store.Revision
		index   uint64
	)
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		index = snap.MaxIndex(ws, store.TableObjects, store.TableRevisions)
		var err error
		if obj, err = snap.Object(ws, key); err != nil {
			return index, err
		}
		if applied, err = snap.LastRevision(ws, store.RevisionApplied); err != nil {
			return index, err
		}
		revs, err = snap.Revisions(ws, 0)
		return index, err
	})
	if err != nil {
		s.answer(w, r, index, nil, err)
		return
	}
	if obj.OwnerKey != "" {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("%s is made by the controller (owned by %s), not declared in Git: it has no Git history", key, obj.OwnerKey))
		return
	}
	log, err := s.opts.History.ObjectHistory(r.Context(), "", obj.File, key, limit)
	if errors.Is(err, fs.ErrNotExist) && applied != nil {
		// The synced commit was rejected and moved or removed the file:
		// read the history from the applied one.
		log, err = s.opts.History.ObjectHistory(r.Context(), applied.SHA, obj.File, key, limit)
	}
	if err != nil {
		s.answer(w, r, index, nil, err)
		return
	}
	notes, err := s.opts.History.Notes(r.Context())
	if err != nil {
		// The history is still worth having: outcomes older than the
		// controller's records show as Unknown.
		s.opts.Log.Warn("history: reading notes failed", "object", key, "err", err)
	}
	out := api.History{
		Index: index, Object: key, File: obj.File, Paths: log.Paths, Truncated: log.Truncated,
		Items: joinHistory(obj, log.Changes, revs, notes),
	}
	s.answer(w, r, index, out, nil)
}

// joinHistory gives each change of obj its outcome: from the controller's
// revision records of the commit, else from the commit's note, else
// Unknown; and marks the change applied now.
func joinHistory(obj *store.Object, changes []gitsync.ObjectChange, revs []*store.Revision, notes map[string]string) []api.HistoryEntry {
	bySHA := map[string][]*store.Revision{}
	for _, rev := range revs { // newest first
		bySHA[rev.SHA] = append(bySHA[rev.SHA], rev)
	}
	out := make([]api.HistoryEntry, 0, len(changes))
	current := -1
	for i, c := range changes {
		e := api.HistoryEntry{
			SHA: c.Commit.SHA, Author: c.Commit.Author, Email: c.Commit.Email, Time: c.Commit.Time, Message: c.Commit.Message,
			Change: string(c.Change), Images: c.Images, Outcome: api.OutcomeUnknown,
		}
		if !fromRecords(&e, obj, bySHA[c.Commit.SHA]) && !fromNote(&e, obj.Key, notes[c.Commit.SHA]) && c.Change == gitsync.ChangeInvalid {
			// A revision with an object that does not decode is rejected whole.
			e.Outcome = api.OutcomeRejected
		}
		if c.Change == gitsync.ChangeInvalid && e.Reason == "" {
			e.Reason = c.Error
		}
		if c.Commit.SHA == obj.Revision {
			current = i
		}
		out = append(out, e)
	}
	if current < 0 {
		// The commit that last changed the object, as the store knows it,
		// is not one of these (after a restart the store stamps the first
		// commit it applied): the newest change to the applied state is.
		for i, c := range changes {
			if c.Hash != "" && c.Hash == obj.Hash {
				current = i
				break
			}
		}
	}
	if current >= 0 {
		out[current].Current = true
	}
	return out
}

// fromRecords sets e's outcome from the controller's records of its commit,
// newest first; false when there are none.
func fromRecords(e *api.HistoryEntry, obj *store.Object, recs []*store.Revision) bool {
	if len(recs) == 0 {
		return false
	}
	e.From = api.OutcomeFromController
	for _, rec := range recs {
		if rec.Status != store.RevisionApplied {
			continue
		}
		for _, ro := range rec.Rollouts {
			if ro.Object == obj.Key {
				e.Outcome, e.Reason = string(ro.Outcome), ro.Reason
				return true
			}
		}
	}
	for _, rec := range recs {
		switch rec.Status {
		case store.RevisionApplied:
			e.Outcome = api.OutcomeApplied
			return true
		case store.RevisionFailed:
			e.Outcome = api.OutcomeRejected
			e.Reason = firstError(rec, obj)
			return true
		}
	}
	e.From = ""
	return false
}

// firstError is the first error of a rejected revision about obj (by
// object or file), else its first error.
func firstError(rec *store.Revision, obj *store.Object) string {
	for _, is := range rec.Errors {
		if is.Object == obj.Key || is.File == obj.File {
			return is.String()
		}
	}
	if len(rec.Errors) > 0 {
		return rec.Errors[0].String()
	}
	return ""
}

// fromNote sets e's outcome from the commit's note; false when it has no
// Keelson note.
func fromNote(e *api.HistoryEntry, key, text string) bool {
	n, ok := gitsync.ParseOutcomeNote(text)
	if !ok {
		return false
	}
	if o, ok := n.Object(key); ok {
		e.Outcome, e.Reason, e.From = o.Outcome, o.Reason, api.OutcomeFromNote
		return true
	}
	if n.Health == api.OutcomeRejected {
		e.Outcome, e.From = api.OutcomeRejected, api.OutcomeFromNote
		e.Reason = strings.TrimPrefix(n.Summary, "— ")
		return true
	}
	return false
}
