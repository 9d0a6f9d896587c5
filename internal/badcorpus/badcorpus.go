// Package badcorpus lists the corpus of bad manifests and repositories kept
// in manifest/testdata/bad, for the tests of every package that must refuse
// them (the manifest loader, the reconciler's Applier). Each case is a
// directory, committed or built by the test (a 2 MiB file and symlinks out
// of the repository are not committed), and a golden file NAME.golden
// holding the exact issues loading it must give: its errors, then its
// warnings prefixed with "warning: ".
//
// It is test support: it has no state, and it reports problems through the
// testing.TB it is given.
package badcorpus

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Case is one bad repository of the corpus.
type Case struct {
	Name string
	// Golden is the path of the golden file.
	Golden string
	dir    string                          // a committed case
	gen    func(tb testing.TB, dir string) // a generated one
}

// Dir returns the case's directory; a generated case is built in a new
// temporary directory of tb.
func (c Case) Dir(tb testing.TB) string {
	tb.Helper()
	if c.gen == nil {
		return c.dir
	}
	dir := tb.TempDir()
	c.gen(tb, dir)
	return dir
}

// Want returns the golden file's lines: the issues loading the case gives.
func (c Case) Want(tb testing.TB) []string {
	tb.Helper()
	data, err := os.ReadFile(c.Golden)
	if err != nil {
		tb.Fatalf("%v (run go test ./manifest -run TestBadCorpus -update)", err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// generated are the cases built by the test rather than committed.
var generated = map[string]func(tb testing.TB, dir string){
	"too-large": func(tb testing.TB, dir string) {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n")
		for i := 0; b.Len() < 2<<20; i++ {
			fmt.Fprintf(&b, "  key%d: %s\n", i, strings.Repeat("x", 100))
		}
		writeFile(tb, filepath.Join(dir, "big.yaml"), b.String())
		writeFile(tb, filepath.Join(dir, "ok.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: small\n")
	},
	"symlink-out": func(tb testing.TB, dir string) {
		symlink(tb, "../../../etc/passwd", filepath.Join(dir, "passwd.yaml"))
		symlink(tb, "/etc/hostname", filepath.Join(dir, "abs.yaml"))
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			tb.Fatal(err)
		}
		symlink(tb, "../../outside.yaml", filepath.Join(dir, "sub", "up.yaml"))
		symlink(tb, "missing.yaml", filepath.Join(dir, "dangling.yaml"))
	},
}

// Cases returns the corpus of the directory badDir (manifest/testdata/bad,
// relative to the calling test's package), sorted by name: every
// sub-directory, and the generated cases. A golden file without a case is
// an error of tb.
func Cases(tb testing.TB, badDir string) []Case {
	tb.Helper()
	entries, err := os.ReadDir(badDir)
	if err != nil {
		tb.Fatal(err)
	}
	var cases []Case
	for _, e := range entries {
		if e.IsDir() {
			cases = append(cases, Case{Name: e.Name(), dir: filepath.Join(badDir, e.Name())})
		}
	}
	for name, gen := range generated {
		cases = append(cases, Case{Name: name, gen: gen})
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	names := map[string]bool{}
	for i := range cases {
		cases[i].Golden = filepath.Join(badDir, cases[i].Name+".golden")
		names[cases[i].Name] = true
	}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".golden"); ok && !names[name] {
			tb.Errorf("%s has no case: no directory %s and no generated case of that name", filepath.Join(badDir, e.Name()), name)
		}
	}
	return cases
}

// writeFile writes content to p, creating its directory.
func writeFile(tb testing.TB, p, content string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// symlink makes p a symlink to target.
func symlink(tb testing.TB, target, p string) {
	tb.Helper()
	if err := os.Symlink(target, p); err != nil {
		tb.Fatal(err)
	}
}
