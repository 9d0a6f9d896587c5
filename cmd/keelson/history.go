package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/gitsync"
)

// gitHistory serves the API's history questions from the controller's
// clone and the repository's notes.
type gitHistory struct {
	history *gitsync.History
	notes   *gitsync.Notes
}

func (g gitHistory) ObjectHistory(ctx context.Context, start, file, key string, limit int) (*gitsync.ObjectLog, error) {
	return g.history.Object(ctx, start, file, key, limit)
}

func (g gitHistory) Notes(ctx context.Context) (map[string]string, error) {
	return g.notes.Read(ctx)
}

type rolloutHistoryOptions struct {
	namespace string
	limit     int
	output    string
}

func newRolloutHistoryCmd() *cobra.Command {
	var o rolloutHistoryOptions
	cmd := &cobra.Command{
		Use:   "history (TYPE NAME | TYPE/NAME)",
		Short: "List the commits that changed a Deployment, DaemonSet or StatefulSet, and what became of each",
		Long: `History lists, newest first, the commits that changed the object (not merely
touched its file): commit, date, author, the images of its pod template at
that commit, and the outcome of the change: Healthy, Degraded (with the
reason), Progressing, Superseded, RolledBack, or Rejected when the commit was
not applied. Outcomes come from the controller's records of the commits it
applied, else from the commit's note in refs/notes/keelson (written by
controllers run with --write-notes; "(note)"), else they are Unknown. The
commit whose version runs now is marked with *.

To roll back, revert the commit in Git: the controller applies the revert.`,
		Example: `  keelson rollout history deploy/web
  keelson rollout history statefulset db -n shop --limit 5`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rolloutHistory(cmd, args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace")
	f.IntVar(&o.limit, "limit", 20, "show at most this many commits; 0 shows all")
	f.StringVarP(&o.output, "output", "o", "", "json or yaml")
	return cmd
}

func rolloutHistory(cmd *cobra.Command, args []string, o rolloutHistoryOptions) error {
	res, name, err := rolloutTarget(args, "show", "history")
	if err != nil {
		return err
	}
	if o.limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (all) or more", o.limit)
	}
	if o.output != "" && o.output != "json" && o.output != "yaml" {
		return fmt.Errorf("-o %q: want json or yaml", o.output)
	}
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	h, err := c.History(cmd.Context(), res.kind, o.namespace, name, o.limit)
	if err != nil {
		return fmt.Errorf("%s %q in namespace %q: %w", strings.ToLower(res.kind), name, o.namespace, err)
	}
	if o.output != "" {
		return printStructured(cmd.OutOrStdout(), o.output, h)
	}
	printHistory(cmd.OutOrStdout(), strings.ToLower(res.kind), name, o.namespace, h, o.limit)
	return nil
}

// printHistory prints a history as a table, kubectl's rollout history with
// our columns; reasons go below their commit's message.
func printHistory(w io.Writer, kind, name, namespace string, h *api.History, limit int) {
	from := h.File
	if len(h.Paths) > 1 || len(h.Paths) == 1 && h.Paths[0] != h.File {
		from += " (following " + strings.Join(h.Paths, ", ") + ")"
	}
	fmt.Fprintf(w, "%s %q in namespace %q, declared in %s\n", kind, name, namespace, from)
	if len(h.Items) == 0 {
		fmt.Fprintln(w, "No commit changed it (the history stops where its file's does).")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\tCOMMIT\tDATE\tAUTHOR\tCHANGE\tIMAGES\tOUTCOME\tMESSAGE")
	for _, e := range h.Items {
		mark := ""
		if e.Current {
			mark = "*"
		}
		images := strings.Join(e.Images, ",")
		if images == "" {
			images = "-"
		}
		outcome := e.Outcome
		if e.From == api.OutcomeFromNote {
			outcome += " (note)"
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(e.Message), "\n")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, shortSHA(e.SHA), e.Time.Format("2006-01-02 15:04"), e.Author,
			strings.ToLower(e.Change), images, outcome, msg)
		if e.Reason != "" {
			// Under the message: the last cell of a line does not widen
			// its column, and a line with every cell keeps the columns
			// of the lines around it aligned.
			fmt.Fprintf(tw, "\t\t\t\t\t\t\t%s\n", e.Reason)
		}
	}
	_ = tw.Flush()
	switch {
	case h.Truncated:
		fmt.Fprintf(w, "Older commits were not looked at (the history reads at most %d commits that touched its files).\n", gitsync.MaxHistoryCommits)
	case limit > 0 && len(h.Items) == limit:
		fmt.Fprintf(w, "The newest %d changes; --limit 0 shows all.\n", limit)
	}
}
