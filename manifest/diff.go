package manifest

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// Change is one object-level difference between two revisions.
type Change struct {
	Key string
	// Op is "added", "removed" or "changed".
	Op string
	// File and Line locate the object in the newer revision (in the older
	// one for removed objects).
	File   string
	Line   int
	Fields []FieldChange // for "changed": the leaf fields that differ
}

// FieldChange is one field that differs. From and To are the JSON
// encodings of the values; an empty string means the field is absent.
// Secret values are shown as "(hidden)".
type FieldChange struct {
	Path     string
	From, To string
}

// Diff compares two revisions' objects by Key. Changes are sorted by Key,
// and the fields of a change in path order (map keys sorted, list items by
// index). It is pure: it reads the objects and does not modify them.
func Diff(from, to []*Object) []Change {
	old := make(map[string]*Object, len(from))
	for _, o := range from {
		old[o.Key()] = o
	}
	cur := make(map[string]*Object, len(to))
	for _, o := range to {
		cur[o.Key()] = o
	}
	var changes []Change
	for k, o := range cur {
		p, ok := old[k]
		switch {
		case !ok:
			changes = append(changes, Change{Key: k, Op: "added", File: o.File, Line: o.Line})
		case p.Hash != o.Hash || p.Hash == "":
			fields := diffValues(toGeneric(p), toGeneric(o), o.Kind == "Secret")
			if len(fields) > 0 {
				changes = append(changes, Change{Key: k, Op: "changed", File: o.File, Line: o.Line, Fields: fields})
			}
		}
	}
	for k, o := range old {
		if _, ok := cur[k]; !ok {
			changes = append(changes, Change{Key: k, Op: "removed", File: o.File, Line: o.Line})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Key < changes[j].Key })
	return changes
}

func toGeneric(o *Object) any {
	if o == nil || o.Obj == nil {
		return nil
	}
	data, err := json.Marshal(o.Obj)
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil
	}
	return v
}

func diffValues(a, b any, secret bool) []FieldChange {
	var out []FieldChange
	var rec func(path string, a, b any, aok, bok bool)
	rec = func(path string, a, b any, aok, bok bool) {
		am, aIsMap := a.(map[string]any)
		bm, bIsMap := b.(map[string]any)
		if aIsMap && bIsMap {
			keys := map[string]bool{}
			for k := range am {
				keys[k] = true
			}
			for k := range bm {
				keys[k] = true
			}
			for _, k := range sortedKeys(keys) {
				av, aok := am[k]
				bv, bok := bm[k]
				rec(joinPath(path, k), av, bv, aok, bok)
			}
			return
		}
		al, aIsList := a.([]any)
		bl, bIsList := b.([]any)
		if aIsList && bIsList {
			n := max(len(al), len(bl))
			for i := 0; i < n; i++ {
				var av, bv any
				aok, bok := i < len(al), i < len(bl)
				if aok {
					av = al[i]
				}
				if bok {
					bv = bl[i]
				}
				rec(path+"["+strconv.Itoa(i)+"]", av, bv, aok, bok)
			}
			return
		}
		as, bs := render(a, aok), render(b, bok)
		if as == bs {
			return
		}
		if secret && (strings.HasPrefix(path, "data") || strings.HasPrefix(path, "stringData")) {
			if aok {
				as = "(hidden)"
			}
			if bok {
				bs = "(hidden)"
			}
		}
		out = append(out, FieldChange{Path: path, From: as, To: bs})
	}
	rec("", a, b, a != nil, b != nil)
	return out
}

// joinPath appends a map key: ".key", or "[key]" for keys that are not
// simple names (labels such as app.kubernetes.io/name).
func joinPath(path, k string) string {
	simple := k != ""
	for _, c := range k {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return path + "[" + k + "]"
	case path == "":
		return k
	}
	return path + "." + k
}

func render(v any, ok bool) string {
	if !ok {
		return ""
	}
	data, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(data)
}
