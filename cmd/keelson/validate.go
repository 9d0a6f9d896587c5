package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/manifest"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check the manifests in DIR (default .) offline, as the controller would",
		Long: `Validate decodes and checks every manifest under DIR exactly as the controller
does for a commit, without a server. It prints every error and warning as
FILE:LINE: Kind/name: field: message and exits 1 if there is any error, so it
can gate pull requests in CI.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			files, err := manifest.DirFiles(dir)
			if err != nil {
				return err
			}
			res := manifest.NewLoader(manifest.Options{}).Load(files)
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			for _, e := range res.Errors {
				fmt.Fprintln(cmd.ErrOrStderr(), "error:", e)
			}
			if !res.OK() {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d error(s), %d warning(s)\n", dir, len(res.Errors), len(res.Warnings))
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d object(s) valid, %d warning(s)\n", dir, len(res.Objects), len(res.Warnings))
			return nil
		},
	}
}
