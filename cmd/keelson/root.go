package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries an exit code without printing more (the command printed
// what the user needs already).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes the CLI with args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	var ee exitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintln(stderr, "keelson:", err)
	}
	return code
}

// exitCode is the process's exit code for a command's error: 0 without
// one, the command's own for an exitError (exec passes the remote
// command's back), 1 otherwise.
func exitCode(err error) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "keelson",
		Short:         "Keelson runs containers from a Git repository",
		Long:          "Keelson is a GitOps container orchestrator: the Git repository is the only write path.\nPush manifests, and Keelson makes the cluster match them.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	server := os.Getenv("KEELSON_SERVER")
	if server == "" {
		server = "http://127.0.0.1:7676"
	}
	root.PersistentFlags().String("server", server, "address of the Keelson API (env KEELSON_SERVER)")
	root.AddCommand(
		newControllerCmd(),
		newValidateCmd(),
		newDiffCmd(),
		newStatusCmd(),
		newGetCmd(),
		newAgentCmd(),
		newDescribeCmd(),
		newLogsCmd(),
		newEventsCmd(),
		newImageCmd(),
		newExecCmd(),
		newUpCmd(),
		newDownCmd(),
		newTopCmd(),
		newRolloutCmd(),
	)
	return root
}
