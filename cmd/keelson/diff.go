package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/manifest"
)

func newDiffCmd() *cobra.Command {
	var from, to string
	var exitCode, schedule bool
	cmd := &cobra.Command{
		Use:   "diff [--from REV] [--to REV] [DIR]",
		Short: "Show the object-level changes between two commits, or a commit and the working tree",
		Long: `Diff loads the manifests under DIR (default .) at two points and prints what
a controller would change: objects added, removed, and the fields changed.
REV is anything Git resolves: a branch, a tag, a SHA, HEAD~1. --from defaults
to HEAD; without --to, the working tree is compared. If either side has an
error, its errors are printed and diff exits 1. With --exit-code, diff exits 2
when there are changes (like git diff).

With --schedule, diff also asks the cluster (--server) for its nodes and
running pods and shows what the scheduler would do with the pods the newer
side wants: whether they fit the free capacity, and why not. It exits 3 when
some do not fit.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			repo, _, _, err := gitsync.OpenLocal(dir, nil)
			if err != nil {
				return err
			}
			load := func(label string, files []manifest.File) (*manifest.Result, error) {
				res := manifest.NewLoader(manifest.Options{}).Load(files)
				if !res.OK() {
					for _, e := range res.Errors {
						fmt.Fprintf(cmd.ErrOrStderr(), "error: %s: %s\n", label, e)
					}
					return nil, exitError{1}
				}
				return res, nil
			}
			fromRev, err := repo.Resolve(cmd.Context(), from)
			if err != nil {
				return err
			}
			a, err := load(from, fromRev.Files)
			if err != nil {
				return err
			}
			toLabel := "working tree"
			var toFiles []manifest.File
			if to != "" {
				toLabel = to
				rev, err := repo.Resolve(cmd.Context(), to)
				if err != nil {
					return err
				}
				toFiles = rev.Files
			} else if toFiles, err = manifest.DirFiles(dir); err != nil {
				return err
			}
			b, err := load(toLabel, toFiles)
			if err != nil {
				return err
			}
			changes := manifest.Diff(a.Objects, b.Objects)
			printDiff(cmd.OutOrStdout(), from, toLabel, changes)
			if schedule {
				c, err := apiClient(cmd)
				if err != nil {
					return err
				}
				lines, nodes, pods, err := previewScheduling(cmd.Context(), c, a.Objects, b.Objects, changes)
				if err != nil {
					return err
				}
				server, _ := cmd.Flags().GetString("server")
				if !printScheduling(cmd.OutOrStdout(), server, lines, nodes, pods) {
					return exitError{3}
				}
			}
			if exitCode && len(changes) > 0 {
				return exitError{2}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "HEAD", "the older side: a commit, branch or tag")
	cmd.Flags().StringVar(&to, "to", "", "the newer side: a commit, branch or tag (default: the working tree)")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 2 when there are changes")
	cmd.Flags().BoolVar(&schedule, "schedule", false, "also show whether the new pods fit the cluster (--server), exit 3 if not")
	return cmd
}

func printDiff(w io.Writer, from, to string, changes []manifest.Change) {
	if len(changes) == 0 {
		fmt.Fprintf(w, "No changes between %s and %s.\n", from, to)
		return
	}
	var added, removed, changed int
	for _, c := range changes {
		switch c.Op {
		case "added":
			added++
			fmt.Fprintf(w, "+ %s  (%s:%d)\n", c.Key, c.File, c.Line)
		case "removed":
			removed++
			fmt.Fprintf(w, "- %s  (was %s:%d)\n", c.Key, c.File, c.Line)
		default:
			changed++
			fmt.Fprintf(w, "~ %s  (%s:%d)\n", c.Key, c.File, c.Line)
			for _, f := range c.Fields {
				switch {
				case f.From == "":
					fmt.Fprintf(w, "    %s: + %s\n", f.Path, f.To)
				case f.To == "":
					fmt.Fprintf(w, "    %s: - %s\n", f.Path, f.From)
				default:
					fmt.Fprintf(w, "    %s: %s -> %s\n", f.Path, f.From, f.To)
				}
			}
		}
	}
	fmt.Fprintf(w, "%s..%s: %d added, %d changed, %d removed\n", from, to, added, changed, removed)
}
