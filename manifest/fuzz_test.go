package manifest

import (
	"strings"
	"testing"
)

// FuzzLoad loads one file of arbitrary bytes, as YAML and as JSON. Load must
// not panic (it would report an internal error) and every issue must name
// a file.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(deployment + "---\n" + service))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"a":"!!"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"dir/fuzz.yaml", "fuzz.json"} {
			content := data
			files := []File{{Path: name, Hash: "h", Size: int64(len(content)), Read: func() ([]byte, error) { return content, nil }}}
			r := NewLoader(Options{}).Load(files)
			for _, is := range append(r.Errors, r.Warnings...) {
				if is.File != name {
					t.Errorf("issue names file %q, want %q: %v", is.File, name, is)
				}
				if strings.Contains(is.Message, "internal error") {
					t.Errorf("internal error: %v", is)
				}
			}
			for _, o := range r.Objects {
				if o.File != name || o.Line < 1 || o.Hash == "" || o.Obj == nil {
					t.Errorf("bad object %+v", o)
				}
			}
		}
	})
}
