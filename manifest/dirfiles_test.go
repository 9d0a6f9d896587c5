package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDirFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "hello\n")
	writeFile(t, filepath.Join(dir, "sub", "b.yml"), "b\n")
	writeFile(t, filepath.Join(dir, ".git", "HEAD"), "ref: refs/heads/main\n")
	writeFile(t, filepath.Join(dir, ".hidden", "c.yaml"), "c\n")
	symlink(t, "sub/b.yml", filepath.Join(dir, "link.yaml"))

	files, err := DirFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello\n"))
	type row struct {
		Path   string
		Mode   fs.FileMode
		Target string
		Size   int64
	}
	var got []row
	for _, f := range files {
		got = append(got, row{f.Path, f.Mode, f.Target, f.Size})
		if f.Path == "a.yaml" {
			if f.Hash != hex.EncodeToString(sum[:]) {
				t.Errorf("a.yaml hash = %s, want sha256 of the content", f.Hash)
			}
			data, err := f.Read()
			if err != nil || string(data) != "hello\n" {
				t.Errorf("a.yaml Read = %q, %v", data, err)
			}
		}
	}
	want := []row{
		{Path: ".hidden/c.yaml", Size: 2},
		{Path: "a.yaml", Size: 6},
		{Path: "link.yaml", Mode: fs.ModeSymlink, Target: "sub/b.yml"},
		{Path: "sub/b.yml", Size: 2},
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b row) bool { return a.Path < b.Path })); diff != "" {
		t.Errorf("DirFiles (-want +got):\n%s", diff)
	}

	// A single file is listed by its base name.
	one, err := DirFiles(filepath.Join(dir, "a.yaml"))
	if err != nil || len(one) != 1 || one[0].Path != "a.yaml" {
		t.Errorf("DirFiles(file) = %+v, %v", one, err)
	}
	if _, err := DirFiles(filepath.Join(dir, "missing")); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("DirFiles(missing) error = %v, want not exist", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestMaxObjects(t *testing.T) {
	files := memFiles(map[string]string{"a.yaml": deployment + "---\n" + service, "b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"})
	r := NewLoader(Options{MaxObjects: 2}).Load(files)
	want := []string{"b.yaml:1: ConfigMap/default/c: too many objects: the revision has 3, the limit is 2"}
	if diff := cmp.Diff(want, issueLines(r)); diff != "" {
		t.Errorf("issues (-want +got):\n%s", diff)
	}
}

func TestKustomizeSymlinkOutside(t *testing.T) {
	files := memFiles(map[string]string{
		"app/kustomization.yaml": "resources:\n- cm.yaml\n",
		"app/cm.yaml":            "symlink:../../secrets.yaml",
	})
	r := NewLoader(Options{}).Load(files)
	if r.OK() {
		t.Fatalf("accepted a kustomization reading a symlink out of the repository")
	}
	want := []string{`app/kustomization.yaml:1: kustomize build failed: accumulating resources: accumulation err='accumulating resources from 'cm.yaml': app/cm.yaml: symlink points outside the repository (target "../../secrets.yaml")': must build at directory: not a valid directory: app/cm.yaml: symlink points outside the repository (target "../../secrets.yaml")`}
	if diff := cmp.Diff(want, issueLines(r)); diff != "" {
		t.Errorf("issues (-want +got):\n%s", diff)
	}
}
