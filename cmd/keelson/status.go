package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

func apiClient(cmd *cobra.Command) (*client.Client, error) {
	server, _ := cmd.Flags().GetString("server")
	return client.New(server)
}

func newStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show which commit is applied and what is wrong with a rejected one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context(), client.Query{})
			if err != nil {
				return err
			}
			switch output {
			case "json", "yaml":
				return printStructured(cmd.OutOrStdout(), output, st)
			case "":
				printStatus(cmd.OutOrStdout(), st, time.Now())
				return nil
			default:
				return fmt.Errorf("-o %q: want json or yaml", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "json or yaml")
	return cmd
}

func printStatus(w io.Writer, st *api.Status, now time.Time) {
	if s := st.Sync; s != nil {
		src := s.Source
		if s.Ref != "" {
			src += " (" + s.Ref + ")"
		}
		if s.Path != "" {
			src += " path " + s.Path
		}
		fmt.Fprintf(w, "Source:   %s\n", src)
		line := s.State
		if !s.LastAttempt.IsZero() {
			line += ", last attempt " + ago(now, s.LastAttempt)
		}
		if s.State != "Synced" && !s.FailingSince.IsZero() {
			line += fmt.Sprintf(", failing since %s (%d attempt(s))", ago(now, s.FailingSince), s.ConsecutiveKO)
		}
		fmt.Fprintf(w, "Sync:     %s\n", line)
		if s.State == "Error" && s.LastError != "" {
			fmt.Fprintf(w, "Error:    %s\n", s.LastError)
		}
	}
	if a := st.Applied; a != nil {
		fmt.Fprintf(w, "Applied:  %s\n", commitLine(a, now))
		fmt.Fprintf(w, "          %d object(s): %d added, %d changed, %d removed; applied %s\n",
			a.Objects, a.Added, a.Changed, a.Removed, ago(now, a.AppliedAt))
		for _, i := range a.Warnings {
			fmt.Fprintf(w, "          warning: %s\n", i)
		}
	} else {
		fmt.Fprintln(w, "Applied:  nothing yet")
	}
	if st.Nodes > 0 || st.Pods > 0 {
		fmt.Fprintf(w, "Cluster:  %d node(s), %d pod(s), %d not scheduled\n", st.Nodes, st.Pods, st.PodsUnscheduled)
	}
	for _, r := range st.RolledBack {
		fmt.Fprintf(w, "Rolled back: %s runs %s, not Git's %s: %s (it stays so until a commit changes it)\n", r.Object, r.Running, r.Failed, r.Reason)
	}
	printCommits(w, st.Recent)
	if f := st.LastFailed; f != nil {
		if rejectionSuperseded(st) {
			// A later commit was applied: the rejection is history, but
			// its errors are still worth reading.
			fmt.Fprintf(w, "Last failed commit (before the applied one): %s\n", commitLine(f, now))
			fmt.Fprintf(w, "          %d error(s):\n", len(f.Errors))
		} else {
			fmt.Fprintf(w, "Rejected: %s\n", commitLine(f, now))
			fmt.Fprintf(w, "          %d error(s); the applied commit keeps running:\n", len(f.Errors))
		}
		for _, i := range f.Errors {
			fmt.Fprintf(w, "          %s\n", i)
		}
	}
}

// rejectionSuperseded reports whether the last failed revision came before
// the applied one, which then fixed it.
func rejectionSuperseded(st *api.Status) bool {
	return st.LastFailed != nil && st.Applied != nil && st.LastFailed.ID < st.Applied.ID
}

// printCommits lists the recent commits with the health of what they
// changed and the time each step took from the commit being fetched.
func printCommits(w io.Writer, revs []*store.Revision) {
	if len(revs) == 0 {
		return
	}
	fmt.Fprintln(w, "Commits:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  COMMIT	SYNC	HEALTH	APPLIED	SCHEDULED	STARTED	READY	MESSAGE")
	for _, r := range revs {
		health := string(r.Health)
		if health == "" {
			health = "-"
		}
		step := func(t time.Time) string {
			if t.IsZero() || r.FetchedAt.IsZero() {
				return "-"
			}
			return "+" + t.Sub(r.FetchedAt).Round(time.Millisecond).String()
		}
		latest := func(f func(store.Rollout) time.Time) time.Time {
			var m time.Time
			for _, x := range r.Rollouts {
				t := f(x)
				if t.IsZero() {
					return time.Time{}
				}
				if t.After(m) {
					m = t
				}
			}
			return m
		}
		sync := "Synced"
		if r.Status == store.RevisionFailed {
			sync, health = "Rejected", "-"
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(r.Message), "\n")
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%q\n", shortSHA(r.SHA), sync, health, step(r.AppliedAt),
			step(latest(func(x store.Rollout) time.Time { return x.Scheduled })),
			step(latest(func(x store.Rollout) time.Time { return x.Started })),
			step(latest(func(x store.Rollout) time.Time { return x.Ready })), msg)
		for _, x := range r.Rollouts {
			if x.Outcome == store.RolloutDegraded || x.Outcome == store.RolloutProgressing && r.Health == store.RolloutDegraded {
				fmt.Fprintf(tw, "  \t\t\t%s: %s %s\n", x.Object, x.Outcome, x.Reason)
			}
		}
	}
	_ = tw.Flush()
}

func commitLine(r *store.Revision, now time.Time) string {
	msg, _, _ := strings.Cut(strings.TrimSpace(r.Message), "\n")
	return fmt.Sprintf("%s %q by %s, %s", shortSHA(r.SHA), msg, r.Author, ago(now, r.Time))
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// ago renders a past time as kubectl does ages: "3m ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return humanDuration(now.Sub(t)) + " ago"
}

func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
