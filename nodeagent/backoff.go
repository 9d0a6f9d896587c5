package nodeagent

import "time"

// Restart back-off, as kubelet does it: the first restart is at once; each
// one after waits 10 s, doubling up to 5 minutes; forgotten once a
// container has run for 10 minutes.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
)

// backoff is the restart back-off state of one container. It is a value:
// the worker that owns the container keeps it.
type backoff struct {
	// failures counts restarts since the back-off was last reset.
	failures int
	// until is when the next start may happen.
	until time.Time
}

// exited records that a container ended at exitedAt after running since
// startedAt, and returns the new state: the delay doubles with each
// restart, and starts over when the container had run for backoffReset.
func (b backoff) exited(startedAt, exitedAt time.Time) backoff {
	if !startedAt.IsZero() && exitedAt.Sub(startedAt) >= backoffReset {
		b.failures = 0
	}
	if b.failures == 0 {
		// kubelet keeps no back-off for a container that has not failed
		// before: the first restart is immediate.
		b.failures = 1
		b.until = exitedAt
		return b
	}
	b.until = exitedAt.Add(doubled(b.failures - 1))
	b.failures++
	return b
}

// doubled is backoffInitial doubled n times, at most backoffMax.
func doubled(n int) time.Duration {
	d := backoffInitial
	for i := 0; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// failed records a failure to start (an image pull, a sandbox or a create
// error) at now. Unlike a crash, a start that failed is not tried again at
// once: as kubelet's image back-off, the next try is 10 s later, doubling up
// to 5 minutes.
func (b backoff) failed(now time.Time) backoff {
	b.until = now.Add(doubled(b.failures))
	b.failures++
	return b
}

// wait is how long to wait at now before the next start (0: go).
func (b backoff) wait(now time.Time) time.Duration {
	if now.Before(b.until) {
		return b.until.Sub(now)
	}
	return 0
}
