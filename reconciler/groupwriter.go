package reconciler

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"

	"github.com/keelson/keelson/store"
)

// maxWriteBatch bounds the writes one transaction of a groupWriter holds,
// and so how long it keeps the store's write lock from the controllers'
// pass.
const maxWriteBatch = 512

// groupWriter writes what many callers hand it at once in shared
// transactions (group commit): the agents' status reports and lease
// renewals, hundreds a second from thousands of nodes. The caller that
// takes the token writes every write queued at that moment, up to max, in
// one transaction, and the others wait for their answer; a lone write waits
// for nothing. A transaction costs a copy of the path to each row it
// changes and one wake of every watcher of its tables, once a batch.
type groupWriter struct {
	st    *store.Store
	log   *slog.Logger
	max   int
	mu    sync.Mutex
	queue []*groupWrite
	token chan struct{}
}

// groupWrite is one caller's change waiting to be written, and its answer
// once done is closed.
type groupWrite struct {
	apply func(*store.Txn) (answer, err error)
	err   error
	done  chan struct{}
}

func newGroupWriter(st *store.Store, log *slog.Logger, max int) *groupWriter {
	return &groupWriter{st: st, log: log, max: max, token: make(chan struct{}, 1)}
}

// write applies a change in a transaction it may share with others and
// returns its answer: what apply says the caller is to be told (nil when
// the change was taken), or the store error that kept it from being
// written. apply must change nothing but the transaction when it answers
// with an error of either kind.
func (g *groupWriter) write(apply func(*store.Txn) (answer, err error)) error {
	w := &groupWrite{apply: apply, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	select {
	case <-w.done:
		return w.err
	case g.token <- struct{}{}:
	}
	defer func() { <-g.token }()
	for {
		select {
		case <-w.done: // written by a holder before this one, or just now
			return w.err
		default:
		}
		// w is queued: it was before the token was taken.
		g.mu.Lock()
		n := min(len(g.queue), g.max)
		batch := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		g.mu.Unlock()
		g.writeBatch(batch)
	}
}

// writeBatch writes a batch in one transaction and answers each write. A
// write refused (an answer) does not stop the others; a store error does,
// and then each is written alone, so that only the one at fault fails.
func (g *groupWriter) writeBatch(batch []*groupWrite) {
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	if len(batch) > 1 {
		txn := g.st.Write()
		var failed error
		for _, w := range batch {
			if w.err, failed = w.apply(txn); failed != nil {
				break
			}
		}
		if failed == nil {
			failed = txn.Commit()
		}
		if failed == nil {
			return
		}
		txn.Abort()
		g.log.Warn("writing a batch failed; writing its parts one by one", "writes", len(batch), "err", failed)
	}
	for _, w := range batch {
		txn := g.st.Write()
		answer, err := w.apply(txn)
		if err == nil {
			err = txn.Commit()
		}
		txn.Abort()
		w.err = cmp.Or(err, answer)
	}
}
