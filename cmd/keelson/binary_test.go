package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// makefileTags are the build tags the Makefile builds keelson with (its
// GOFLAGS line), so that tests build the binary users get.
func makefileTags(tb testing.TB) string {
	tb.Helper()
	data, err := os.ReadFile("../../Makefile")
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^export GOFLAGS \+= -tags=(\S+)$`).FindSubmatch(data)
	if m == nil {
		tb.Fatal("Makefile: no `export GOFLAGS += -tags=...` line")
	}
	return string(m[1])
}

// goBuild builds this package as the Makefile does, with extra arguments,
// and returns what the build printed (the linker's, with -ldflags).
func goBuild(tb testing.TB, out string, args ...string) []byte {
	tb.Helper()
	stdout, err := build(makefileTags(tb), out, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return stdout
}

func build(tags, exe string, args ...string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(goBin, append(append([]string{"build", "-tags=" + tags, "-o", exe}, args...), ".")...)
	// GOFLAGS would add its own -tags, which go build refuses twice.
	cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return out, nil
}

var product struct {
	once sync.Once
	path string
	err  error
}

// productBinary is keelson as the Makefile builds it, built once per test
// process. Benchmarks that measure a process's memory run it rather than the
// test binary: tests link more (go-cmp among them), and the executable's
// size is part of what RSS shows.
//
// KEELSON_BENCH_BIN names another keelson executable to run instead.
func productBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("KEELSON_BENCH_BIN"); p != "" {
		return p
	}
	tags := makefileTags(tb)
	product.once.Do(func() {
		dir, err := os.MkdirTemp("", "keelson-bin")
		if err != nil {
			product.err = err
			return
		}
		product.path = filepath.Join(dir, "keelson")
		_, product.err = build(tags, product.path)
	})
	if product.err != nil {
		tb.Fatal(product.err)
	}
	return product.path
}

// TestLinkerDropsUnusedMethods checks that the binary as the Makefile builds
// it reaches no call of a method by a computed name through reflect
// (reflect.Value.Method, MethodByName with a variable; text/template's
// execution is one). One such call anywhere makes the linker keep every
// exported method of every type it keeps, and the binary grows by a third
// (all of k8s.io/api's protobuf code, for one). The message names the path
// that reaches the call, so that whoever added it can see why.
func TestLinkerDropsUnusedMethods(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	deps := goBuild(t, filepath.Join(t.TempDir(), "keelson"), "-ldflags=-dumpdep")
	tag := regexp.MustCompile(` <[A-Za-z]+>`)
	callers := map[string]string{} // symbol -> the first symbol seen to reach it
	var marked []string
	sc := bufio.NewScanner(bytes.NewReader(deps))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " -> ")
		if !ok {
			continue
		}
		if strings.Contains(from, "<ReflectMethod>") {
			marked = append(marked, tag.ReplaceAllString(from, ""))
		}
		from, to = tag.ReplaceAllString(from, ""), tag.ReplaceAllString(to, "")
		if _, seen := callers[to]; !seen {
			callers[to] = from
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(callers) < 1000 {
		t.Fatalf("go build -ldflags=-dumpdep printed %d edges: not the linker's dependency dump", len(callers))
	}
	seen := map[string]bool{}
	for _, m := range marked {
		if seen[m] {
			continue
		}
		seen[m] = true
		path := []string{m}
		for s := callers[m]; s != "" && s != "_" && len(path) < 30; s = callers[s] {
			path = append(path, s)
		}
		t.Errorf("the binary calls methods through reflect by computed name in %s, so the linker keeps every exported method; reached by:\n  %s",
			m, strings.Join(path[1:], "\n  "))
	}
}
