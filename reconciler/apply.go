package reconciler

import (
	"fmt"
	"log/slog"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// keepRevisions is how many revision records the store keeps.
const keepRevisions = 100

// Applier loads revisions and applies them to the store. Apply must be
// called from one goroutine at a time (the Loader's cache is not shared).
type Applier struct {
	store   *store.Store
	loader  *manifest.Loader
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics
	svcNet  ServiceNetwork
}

// NewApplier returns an Applier writing to st. metrics may be nil.
func NewApplier(st *store.Store, loader *manifest.Loader, metrics *Metrics, log *slog.Logger, now func() time.Time) *Applier {
	if now == nil {
		now = time.Now
	}
	return &Applier{store: st, loader: loader, log: log, now: now, metrics: metrics, svcNet: DefaultServiceNetwork()}
}

// SetServiceNetwork sets where Services get their addresses and ports
// (DefaultServiceNetwork until then). Call it before the first Apply.
func (a *Applier) SetServiceNetwork(n ServiceNetwork) { a.svcNet = n }

// Apply loads rev's files and, if the revision is valid, makes its objects
// the store's desired state in one transaction; otherwise it records the
// revision as failed and changes nothing else. fetchedAt is when the commit
// was seen. The returned record says which.
func (a *Applier) Apply(rev *gitsync.Revision, fetchedAt time.Time) (*store.Revision, error) {
	start := a.now()
	res := a.loader.Load(rev.Files)
	loadDur := a.now().Sub(start)

	rec := &store.Revision{
		SHA:          rev.Commit.SHA,
		Ref:          rev.Ref,
		Author:       rev.Commit.Author,
		Email:        rev.Commit.Email,
		Message:      rev.Commit.Message,
		Time:         rev.Commit.Time,
		FetchedAt:    fetchedAt,
		LoadDuration: loadDur,
		FilesDecoded: res.Decoded,
		Objects:      len(res.Objects),
		Errors:       res.Errors,
		Warnings:     res.Warnings,
	}

	txn := a.store.Write()
	defer txn.Abort()
	snap := txn.Snapshot()
	sync, err := snap.Sync(memdb.NewWatchSet())
	if err != nil {
		return nil, err
	}
	next := &store.SyncState{}
	if sync != nil {
		c := *sync
		next = &c
	}
	next.LastAttempt = a.now()
	next.ObservedSHA = rev.Commit.SHA

	var (
		plan     *Plan
		events   []*store.Event
		rollouts []store.Rollout
	)
	if res.OK() {
		current, err := snap.Objects(memdb.NewWatchSet(), store.ObjectQuery{})
		if err != nil {
			return nil, err
		}
		plan = ComputePlan(current, res.Objects, rev.Commit.SHA)
		rollouts = rolloutsOf(current, plan)
		// Services get their addresses in the transaction that applies
		// them; a request that cannot be met rejects the revision.
		var issues []manifest.Issue
		issues, events = allocateServices(a.svcNet, current, plan)
		rec.Errors = append(rec.Errors, issues...)
		if len(issues) == 0 {
			warnings, evs := ingressProblems(stateAfter(current, plan), plan.changedKeys())
			rec.Warnings = append(rec.Warnings, warnings...)
			events = append(events, evs...)
		}
	}
	if len(rec.Errors) > 0 {
		rec.Status = store.RevisionFailed
		next.State = "Failed"
		next.LastError = fmt.Sprintf("commit %s rejected: %d error(s), first: %s", short(rev.Commit.SHA), len(rec.Errors), rec.Errors[0])
		if next.FailingSince.IsZero() {
			next.FailingSince = next.LastAttempt
		}
		next.ConsecutiveKO++
	} else {
		for _, o := range plan.Upserts {
			if err := txn.UpsertObject(o); err != nil {
				return nil, err
			}
		}
		for _, key := range plan.Deletes {
			if err := txn.DeleteObject(key); err != nil {
				return nil, err
			}
		}
		for _, e := range events {
			if err := txn.AddEvent(e, a.now()); err != nil {
				return nil, err
			}
		}
		rec.Status = store.RevisionApplied
		rec.Added, rec.Changed, rec.Removed = plan.Added, plan.Changed, len(plan.Deletes)
		rec.Rollouts = rollouts
		rec.Health = sumHealth(rec.Rollouts)
		next.State = "Synced"
		next.LastError = ""
		next.LastSuccess = next.LastAttempt
		next.FailingSince = time.Time{}
		next.ConsecutiveKO = 0
	}
	rec.AppliedAt = a.now()
	if err := txn.AddRevision(rec); err != nil {
		return nil, err
	}
	if err := txn.PruneRevisions(keepRevisions); err != nil {
		return nil, err
	}
	if err := txn.SetSync(next); err != nil {
		return nil, err
	}
	if err := txn.Commit(); err != nil {
		return nil, err
	}
	a.metrics.observeApply(rec, a.now().Sub(fetchedAt))
	if rec.Status == store.RevisionFailed {
		a.log.Warn("revision rejected; the last good revision keeps running",
			"sha", short(rec.SHA), "errors", len(rec.Errors), "first", rec.Errors[0].String())
	} else {
		a.log.Info("revision applied", "sha", short(rec.SHA), "objects", rec.Objects,
			"added", rec.Added, "changed", rec.Changed, "removed", rec.Removed, "load", loadDur)
	}
	return rec, nil
}

// SourceError records that the source could not be fetched. Nothing else
// changes: the last applied revision keeps running.
func (a *Applier) SourceError(err error) error {
	txn := a.store.Write()
	defer txn.Abort()
	sync, rerr := txn.Snapshot().Sync(memdb.NewWatchSet())
	if rerr != nil {
		return rerr
	}
	next := &store.SyncState{}
	if sync != nil {
		c := *sync
		next = &c
	}
	now := a.now()
	next.State = "Error"
	next.LastError = err.Error()
	next.LastAttempt = now
	if next.FailingSince.IsZero() {
		next.FailingSince = now
	}
	next.ConsecutiveKO++
	if err := txn.SetSync(next); err != nil {
		return err
	}
	a.metrics.observeSourceError()
	return txn.Commit()
}

// SetSource records what the controller follows, before the first sync.
func (a *Applier) SetSource(source, ref, path string) error {
	txn := a.store.Write()
	defer txn.Abort()
	sync, err := txn.Snapshot().Sync(memdb.NewWatchSet())
	if err != nil {
		return err
	}
	next := &store.SyncState{State: "Pending"}
	if sync != nil {
		c := *sync
		next = &c
	}
	next.Source, next.Ref, next.Path = source, ref, path
	if err := txn.SetSync(next); err != nil {
		return err
	}
	return txn.Commit()
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
