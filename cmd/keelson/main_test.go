package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMain lets a test or benchmark run the keelson binary as a separate
// process (to measure its memory alone) by re-executing the test binary with
// KEELSON_TEST_MAIN=1 and keelson's own arguments.
func TestMain(m *testing.M) {
	if os.Getenv("KEELSON_TEST_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	code := m.Run()
	if product.path != "" {
		_ = os.RemoveAll(filepath.Dir(product.path)) // the binary productBinary built
	}
	os.Exit(code)
}
