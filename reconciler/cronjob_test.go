package reconciler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/store"
)

// at is a time on the CronJob tests' day.
func at(h, m, s int) time.Time { return time.Date(2026, 1, 1, h, m, s, 0, time.UTC) }

// reportJob is the name of the Job the CronJob report runs for t.
func reportJob(t time.Time) string { return fmt.Sprintf("report-%d", t.Unix()/60) }

// cronJobWith is cronJob with its concurrencyPolicy and more spec lines.
func cronJobWith(policy, spec string) string {
	return strings.Replace(cronJob, "  concurrencyPolicy: Forbid\n", "  concurrencyPolicy: "+policy+"\n"+spec, 1)
}

func jobNames(t *testing.T, st *store.Store) []string {
	t.Helper()
	objs, err := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: "Job"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

// podsByJob counts the pods (not terminating) of each Job.
func podsByJob(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range podsOf(t, st) {
		out[strings.TrimPrefix(p.OwnerKey, "Job/default/")]++
	}
	return out
}

func cronStatus(t *testing.T, st *store.Store) *batchv1.CronJobStatus {
	t.Helper()
	o, err := st.Snapshot().Object(memdb.NewWatchSet(), "CronJob/default/report")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := o.Status.(*batchv1.CronJobStatus)
	return s
}

func activeJobs(s *batchv1.CronJobStatus) []string {
	var out []string
	for _, r := range s.Active {
		out = append(out, r.Name)
	}
	return out
}

// TestCronJobConcurrencyPolicy: at 10:10 the 10:05 Job still runs. Allow
// runs the next beside it; Replace deletes it (with its pod) and runs the
// next; Forbid (TestCronJobSchedulesJobs) skips the run.
func TestCronJobConcurrencyPolicy(t *testing.T) {
	first, second := reportJob(at(10, 5, 0)), reportJob(at(10, 10, 0))
	for _, tc := range []struct {
		policy string
		want   []string // Jobs at 10:10, all active with one pod each
	}{
		{"Allow", []string{first, second}},
		{"Replace", []string{second}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			register(t, c, "n1")
			clk.t = at(10, 1, 0)
			if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": cronJobWith(tc.policy, "")}), clk.t); err != nil {
				t.Fatal(err)
			}
			settle(t, c)
			clk.t = at(10, 5, 1)
			settle(t, c)
			reportReady(t, c, st, clk.t)
			if got := podsByJob(t, st); !cmp.Equal(got, map[string]int{first: 1}) {
				t.Fatalf("pods by Job at 10:05: %v", got)
			}
			clk.t = at(10, 10, 1)
			for range 2 {
				settle(t, c)
				reportReady(t, c, st, clk.t)
			}
			clk.t = clk.t.Add(terminationWait) // a replaced Job's Ready pod terminates first
			settle(t, c)
			if got := jobNames(t, st); !cmp.Equal(got, tc.want) {
				t.Errorf("Jobs at 10:10: %v, want %v", got, tc.want)
			}
			want := map[string]int{}
			for _, j := range tc.want {
				want[j] = 1
			}
			if got := podsByJob(t, st); !cmp.Equal(got, want) {
				t.Errorf("pods by Job at 10:10: %v, want %v", got, want)
			}
			if got := allPods(t, st); len(got) != len(tc.want) {
				t.Errorf("pod rows %v, want %d", got, len(tc.want))
			}
			if got := activeJobs(cronStatus(t, st)); !cmp.Equal(got, tc.want) {
				t.Errorf("status.active %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCronJobSuspend: a suspended CronJob starts no Job; resumed, it runs
// again from its next scheduled time (the missed runs are not made up).
func TestCronJobSuspend(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	clk.t = at(10, 1, 0)
	suspended := cronJobWith("Allow", "  suspend: true\n")
	if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": suspended}), clk.t); err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{at(10, 1, 0), at(10, 5, 1), at(10, 10, 1), at(10, 15, 1)} {
		clk.t = now
		settle(t, c)
		if got := jobNames(t, st); len(got) != 0 {
			t.Fatalf("suspended, at %s: Jobs %v", now.Format("15:04:05"), got)
		}
	}
	clk.t = at(10, 17, 0)
	if _, err := a.Apply(revision("c2", map[string]string{"cj.yaml": cronJobWith("Allow", "  suspend: false\n")}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if got := jobNames(t, st); len(got) != 0 {
		t.Fatalf("right after resuming: Jobs %v, want none (missed runs are not made up)", got)
	}
	clk.t = at(10, 20, 1)
	settle(t, c)
	if got, want := jobNames(t, st), []string{reportJob(at(10, 20, 0))}; !cmp.Equal(got, want) {
		t.Fatalf("resumed, at 10:20: Jobs %v, want %v", got, want)
	}
	if n := len(podsOf(t, st)); n != 1 {
		t.Errorf("%d pods, want 1", n)
	}
	// Suspended again while that Job runs: it goes on, no new one starts.
	clk.t = at(10, 21, 0)
	if _, err := a.Apply(revision("c3", map[string]string{"cj.yaml": suspended}), clk.t); err != nil {
		t.Fatal(err)
	}
	clk.t = at(10, 25, 1)
	settle(t, c)
	if got, want := jobNames(t, st), []string{reportJob(at(10, 20, 0))}; !cmp.Equal(got, want) {
		t.Errorf("suspended again, at 10:25: Jobs %v, want %v", got, want)
	}
	if n := len(podsOf(t, st)); n != 1 {
		t.Errorf("%d pods, want the running Job's 1", n)
	}
}

// TestCronJobFailedJobsHistoryLimit: failed Jobs beyond
// failedJobsHistoryLimit are removed, oldest first, with their pods.
func TestCronJobFailedJobsHistoryLimit(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	clk.t = at(10, 1, 0)
	cj := cronJobWith("Allow", "  failedJobsHistoryLimit: 1\n")
	cj = strings.Replace(cj, "    spec:\n      template:", "    spec:\n      backoffLimit: 0\n      template:", 1)
	cj = strings.Replace(cj, "restartPolicy: OnFailure", "restartPolicy: Never", 1)
	if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": cj}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	for i, now := range []time.Time{at(10, 5, 1), at(10, 10, 1), at(10, 15, 1)} {
		clk.t = now
		settle(t, c)
		for _, p := range podsOf(t, st) {
			if p.Phase != string(corev1.PodFailed) {
				setPhase(t, st, p.Key, corev1.PodFailed)
			}
		}
		settle(t, c)
		want := reportJob(now.Truncate(time.Minute))
		o, err := st.Snapshot().Object(memdb.NewWatchSet(), "Job/default/"+want)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if s := o.Status.(*batchv1.JobStatus); !jobFailed(s) {
			t.Fatalf("run %d: Job %s not failed: %+v", i, want, s)
		}
		if got := jobNames(t, st); !cmp.Equal(got, []string{want}) {
			t.Errorf("run %d: Jobs %v, want only the last failed one %s", i, got, want)
		}
		if got := allPods(t, st); len(got) != 1 || !strings.HasPrefix(got[0], want+"-") {
			t.Errorf("run %d: pods %v, want only the one of %s", i, got, want)
		}
	}
}

// Runs missed while no pass came (the controller was down from 10:01 to
// 10:31) are not made up one by one: only the most recent runs, and only
// within startingDeadlineSeconds of its time.
func TestCronJobMissedRuns(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		passAt     time.Time
		want       []string
		missed     bool
	}{
		{"the most recent", "", at(10, 31, 1), []string{reportJob(at(10, 30, 0))}, false},
		{"within the deadline", "  startingDeadlineSeconds: 120\n", at(10, 31, 1), []string{reportJob(at(10, 30, 0))}, false},
		{"past the deadline", "  startingDeadlineSeconds: 30\n", at(10, 31, 1), nil, true},
		{"a day and more", "", at(10, 1, 0).Add(50 * time.Hour), []string{reportJob(at(12, 0, 0).Add(48 * time.Hour))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			register(t, c, "n1")
			clk.t = at(10, 1, 0)
			if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": cronJobWith("Allow", tc.spec)}), clk.t); err != nil {
				t.Fatal(err)
			}
			settle(t, c)
			clk.t = tc.passAt
			settle(t, c)
			if got := jobNames(t, st); !cmp.Equal(got, tc.want) {
				t.Errorf("Jobs after the gap: %v, want %v", got, tc.want)
			}
			ev, _ := st.Snapshot().Events(memdb.NewWatchSet(), "CronJob/default/report")
			n := 0
			for _, e := range ev {
				if e.Reason == "MissSchedule" {
					n++
				}
			}
			if (n == 1) != tc.missed || n > 1 {
				t.Errorf("%d MissSchedule events, want one: %v", n, tc.missed)
			}
		})
	}
}
