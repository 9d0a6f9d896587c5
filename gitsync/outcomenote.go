package gitsync

import (
	"regexp"
	"strings"
)

// OutcomeNote is what Keelson writes in a commit's note: what became of the
// commit, in a few plain lines that `git log --notes=keelson` shows and
// ParseOutcomeNote reads back:
//
//	keelson: Healthy (applied 12ms, scheduled 210ms, started 640ms, ready 1.4s after fetch)
//	Deployment/shop/web: Healthy, image web:v2
//
//	keelson: Degraded — Deployment/shop/web: ReplicaSet "web-abc" has timed out progressing
//	Deployment/shop/web: Degraded, image web:v3 — ReplicaSet "web-abc" has timed out progressing
//
//	keelson: Rejected — web.yaml:12: Deployment/shop/web: spec.replicas: Invalid value: -1
//	error: web.yaml:12: Deployment/shop/web: spec.replicas: Invalid value: -1
type OutcomeNote struct {
	// Health is the commit's outcome: Healthy, Degraded, Superseded,
	// RolledBack (store.RolloutOutcome), or Rejected.
	Health string
	// Summary follows the health on the first line: the timings, or the
	// first problem after " — ".
	Summary string
	Objects []NoteObject
	// Errors are a rejected commit's errors.
	Errors []string
}

// NoteObject is what became of one object the commit changed.
type NoteObject struct {
	Object  string // Kind/namespace/name
	Outcome string
	Images  []string
	Reason  string
}

// noteDash separates a line from its reason.
const noteDash = " — "

// String is the note's text, ending with a newline.
func (n OutcomeNote) String() string {
	var b strings.Builder
	b.WriteString(keelsonMarker + oneLine(n.Health))
	if n.Summary != "" {
		b.WriteString(" " + oneLine(n.Summary))
	}
	b.WriteByte('\n')
	for _, o := range n.Objects {
		b.WriteString(oneLine(o.Object) + ": " + oneLine(o.Outcome))
		switch len(o.Images) {
		case 0:
		case 1:
			b.WriteString(", image " + oneLine(o.Images[0]))
		default:
			b.WriteString(", images " + oneLine(strings.Join(o.Images, ", ")))
		}
		if o.Reason != "" {
			b.WriteString(noteDash + oneLine(o.Reason))
		}
		b.WriteByte('\n')
	}
	for _, e := range n.Errors {
		b.WriteString("error: " + oneLine(e) + "\n")
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var noteObjectLine = regexp.MustCompile(`^([A-Za-z0-9]+/[^\s:]+): ([A-Za-z]+)(?:, images? (.+?))?(?:` + noteDash + `(.*))?$`)

// ParseOutcomeNote reads Keelson's part of a note (other text before it is
// ignored); ok is false when the note has none.
func ParseOutcomeNote(text string) (n OutcomeNote, ok bool) {
	i := keelsonStart(text)
	if i < 0 {
		return OutcomeNote{}, false
	}
	lines := strings.Split(strings.TrimRight(text[i:], "\n"), "\n")
	first := strings.TrimPrefix(lines[0], keelsonMarker)
	n.Health, n.Summary, _ = strings.Cut(first, " ")
	for _, l := range lines[1:] {
		if e, ok := strings.CutPrefix(l, "error: "); ok {
			n.Errors = append(n.Errors, e)
			continue
		}
		m := noteObjectLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		o := NoteObject{Object: m[1], Outcome: m[2], Reason: m[4]}
		if m[3] != "" {
			o.Images = strings.Split(m[3], ", ")
		}
		n.Objects = append(n.Objects, o)
	}
	return n, true
}

// Object returns what the note says of the object key, if anything.
func (n OutcomeNote) Object(key string) (NoteObject, bool) {
	for _, o := range n.Objects {
		if o.Object == key {
			return o, true
		}
	}
	return NoteObject{}, false
}
