package nodeagent

import (
	"testing"
	"time"
)

func TestBackoffDoublesToFiveMinutesAndResets(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b backoff
	now := t0
	var got []time.Duration
	for range 8 {
		// Each run lasts 1 s before crashing.
		b = b.exited(now, now.Add(time.Second))
		now = now.Add(time.Second)
		got = append(got, b.wait(now))
		now = now.Add(b.wait(now))
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	// A run of 10 minutes resets the back-off: the next restart is immediate.
	b = b.exited(now, now.Add(10*time.Minute))
	if d := b.wait(now.Add(10 * time.Minute)); d != 0 {
		t.Errorf("after a 10 minute run the delay is %v, want 0", d)
	}
	if d := b.wait(now.Add(time.Hour)); d != 0 {
		t.Errorf("after the delay passed, wait = %v, want 0", d)
	}
}

func TestBackoffFailedStart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := backoff{}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute} {
		at := t0.Add(time.Duration(i) * time.Hour)
		b = b.failed(at)
		if d := b.wait(at); d != want {
			t.Errorf("failed start %d waits %v, want %v", i+1, d, want)
		}
	}
}
