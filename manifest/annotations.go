package manifest

import (
	"errors"
	"time"
)

// AnnotationScaleDownDelay on a Deployment keeps the ready pods that its
// rolling updates scale down running, out of their services' endpoints,
// for that long (a Go duration such as "30s"), so that a `git revert`
// within it takes them back at once instead of starting new ones (the
// reconciler's park.go). "0s" keeps none. Validated here: a bad value
// rejects the revision.
const AnnotationScaleDownDelay = "keelson.dev/scale-down-delay"

// ScaleDownDelay parses the value of AnnotationScaleDownDelay.
func ScaleDownDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("must be a duration such as 30s or 5m")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}
