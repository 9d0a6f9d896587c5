package reconciler

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// Plan is what applying a revision changes in the store.
type Plan struct {
	Upserts []*store.Object // new or changed objects
	Deletes []string        // keys of objects the revision no longer has
	Added   int
	Changed int
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Upserts) == 0 && len(p.Deletes) == 0 }

// ComputePlan compares the objects that came from Git (current; objects
// owned by controllers are ignored) with the objects of a revision. An object
// whose hash and location are unchanged is left alone, so its ModifyIndex
// only moves when it really changed. sha is stamped on changed objects.
func ComputePlan(current []*store.Object, desired []*manifest.Object, sha string) *Plan {
	have := make(map[string]*store.Object, len(current))
	for _, o := range current {
		if o.OwnerKey == "" {
			have[o.Key] = o
		}
	}
	p := &Plan{}
	for _, d := range desired {
		key := d.Key()
		old, ok := have[key]
		delete(have, key)
		switch {
		case !ok:
			p.Added++
		case old.Hash != d.Hash:
			p.Changed++
		case old.File != d.File || old.Line != d.Line:
			// Same desired state, moved in the repository: keep the commit
			// that last changed it, update where it is.
			o := *old
			o.File, o.Line = d.File, d.Line
			p.Upserts = append(p.Upserts, &o)
			continue
		default:
			continue
		}
		p.Upserts = append(p.Upserts, toStore(d, sha))
	}
	for key := range have {
		p.Deletes = append(p.Deletes, key)
	}
	slices.Sort(p.Deletes)
	return p
}

func toStore(d *manifest.Object, sha string) *store.Object {
	o := &store.Object{
		Key:        d.Key(),
		APIVersion: d.APIVersion,
		Kind:       d.Kind,
		Namespace:  d.Namespace,
		Name:       d.Name,
		Obj:        d.Obj,
		File:       d.File,
		Line:       d.Line,
		Hash:       d.Hash,
		Revision:   sha,
	}
	if m, err := meta.Accessor(d.Obj); err == nil {
		o.Labels = m.GetLabels()
	}
	return o
}

// changedKeys is the set of objects the plan adds or changes.
func (p *Plan) changedKeys() map[string]bool {
	m := make(map[string]bool, len(p.Upserts))
	for _, o := range p.Upserts {
		m[o.Key] = true
	}
	return m
}

// stateAfter is the objects from Git once the plan is applied: current
// without what it deletes, with what it upserts (controllers' objects left
// out).
func stateAfter(current []*store.Object, p *Plan) []*store.Object {
	gone := make(map[string]bool, len(p.Deletes)+len(p.Upserts))
	for _, k := range p.Deletes {
		gone[k] = true
	}
	for _, o := range p.Upserts {
		gone[o.Key] = true
	}
	out := make([]*store.Object, 0, len(current)+len(p.Upserts))
	created := map[string]uint64{}
	for _, o := range current {
		created[o.Key] = o.CreateIndex
		if o.OwnerKey == "" && !gone[o.Key] {
			out = append(out, o)
		}
	}
	for _, o := range p.Upserts {
		// A changed object keeps its age (the store keeps CreateIndex).
		if o.CreateIndex == 0 {
			o.CreateIndex = created[o.Key]
		}
		out = append(out, o)
	}
	return out
}
