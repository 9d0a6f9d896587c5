package manifest

import (
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// locator maps field paths of one object to lines of its file. The document
// is parsed (with yaml.v3, which keeps positions) only when a line is first
// asked for, so objects without issues cost nothing here.
//
// A nil *locator is valid: it knows no lines (objects rendered by kustomize).
type locator struct {
	data      []byte // the document (YAML or JSON) the object came from
	firstLine int    // line of the file where data starts
	// parent is the locator of the List holding this object, whose parsed
	// document is shared; base is the object's path in it ("items[3]").
	parent   *locator
	base     string
	fallback int // the object's line, for paths that cannot be found

	parsed bool
	root   *yaml.Node // the object's node, nil when parsing failed
}

// maxVisit bounds the nodes one search visits: aliases can make a small
// document a very large tree.
const maxVisit = 200000

// pathSeg is one step of a field path: a key or an index.
type pathSeg struct {
	key   string
	index int
	isIdx bool
}

// splitPath splits "spec.containers[0].image" or "metadata.labels[a.b/c]"
// into steps. Bracketed parts that are numbers are indexes, others are map
// keys.
func splitPath(p string) []pathSeg {
	var segs []pathSeg
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			i++
		case '[':
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				segs = append(segs, pathSeg{key: p[i+1:]})
				return segs
			}
			part := p[i+1 : i+end]
			if n, err := strconv.Atoi(part); err == nil && n >= 0 {
				segs = append(segs, pathSeg{index: n, isIdx: true, key: part})
			} else {
				segs = append(segs, pathSeg{key: part})
			}
			i += end + 1
		default:
			j := i
			for j < len(p) && p[j] != '.' && p[j] != '[' {
				j++
			}
			segs = append(segs, pathSeg{key: p[i:j]})
			i = j
		}
	}
	return segs
}

func (l *locator) node() *yaml.Node {
	if l == nil {
		return nil
	}
	if !l.parsed && l.parent != nil {
		l.parsed = true
		if p := l.parent.node(); p != nil {
			l.root, _ = walk(p, splitPath(l.base))
		}
	}
	if !l.parsed {
		l.parsed = true
		var doc yaml.Node
		if err := yaml.Unmarshal(l.data, &doc); err == nil && len(doc.Content) > 0 {
			l.root = doc.Content[0]
		}
	}
	return l.root
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// walk follows segs from n as far as the document allows. It returns the
// node reached (nil if the path does not exist completely) and the line of
// the deepest step found (0 if none).
func walk(n *yaml.Node, segs []pathSeg) (*yaml.Node, int) {
	line := 0
	for _, s := range segs {
		n = deref(n)
		if n == nil {
			return nil, line
		}
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s.key {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return nil, line
			}
			n = next
		case yaml.SequenceNode:
			if !s.isIdx || s.index >= len(n.Content) {
				return nil, line
			}
			n = n.Content[s.index]
			line = n.Line
		default:
			return nil, line
		}
	}
	if n != nil && line == 0 {
		line = n.Line
	}
	return n, line
}

// line returns the line of the field at path (or of its deepest existing
// parent), or the object's line.
func (l *locator) line(path string) int {
	if l == nil {
		return 0
	}
	root := l.node()
	if root == nil {
		return l.fallback
	}
	if path == "" {
		return l.firstLine + root.Line - 1
	}
	_, line := walk(root, splitPath(path))
	if line == 0 {
		return l.fallback
	}
	return l.firstLine + line - 1
}

// objectLine is the line where the object starts.
func (l *locator) objectLine() int {
	return l.line("")
}

// findTyped resolves a path without indexes, as encoding/json reports type
// errors ("spec.template.spec.containers.ports.containerPort"), to the first
// matching field whose value has the JSON type jsonType. It returns the path
// with indexes and its line; ok is false if nothing matched.
func (l *locator) findTyped(dotted, jsonType string) (string, int, bool) {
	root := l.node()
	if root == nil {
		return "", 0, false
	}
	var keys []string
	if dotted != "" {
		keys = strings.Split(dotted, ".")
	}
	var firstPath string
	var firstLine int
	budget := maxVisit
	var search func(n *yaml.Node, keys []string, path string, line int, depth int) (string, int, bool)
	search = func(n *yaml.Node, keys []string, path string, line int, depth int) (string, int, bool) {
		n = deref(n)
		budget--
		if n == nil || depth > 64 || budget < 0 {
			return "", 0, false
		}
		if len(keys) == 0 {
			if firstPath == "" {
				firstPath, firstLine = path, line
			}
			if jsonType == "" || yamlJSONType(n) == jsonType {
				return path, line, true
			}
			return "", 0, false
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == keys[0] {
					p := keys[0]
					if path != "" {
						p = path + "." + keys[0]
					}
					return search(n.Content[i+1], keys[1:], p, n.Content[i].Line, depth+1)
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if p, ln, ok := search(c, keys, path+"["+strconv.Itoa(i)+"]", c.Line, depth+1); ok {
					return p, ln, true
				}
			}
		}
		return "", 0, false
	}
	if p, ln, ok := search(root, keys, "", root.Line, 0); ok {
		return p, l.firstLine + ln - 1, true
	}
	if firstPath != "" {
		return firstPath, l.firstLine + firstLine - 1, true
	}
	return "", 0, false
}

// yamlJSONType is the JSON type a YAML node converts to, in the words
// encoding/json uses in its errors.
func yamlJSONType(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "array"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "number"
		case "!!bool":
			return "bool"
		case "!!null":
			return "null"
		}
		// yaml.v3 follows YAML 1.2; Kubernetes (yaml.v2) also reads the
		// YAML 1.1 booleans.
		switch n.Value {
		case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF":
			if n.Style == 0 {
				return "bool"
			}
		}
		return "string"
	}
	return ""
}

// visit calls fn for each scalar value under the object with its path and
// line, depth first, in document order, until fn returns true.
func (l *locator) visit(fn func(path string, n *yaml.Node, key, parentKey string) bool) {
	root := l.node()
	if root == nil {
		return
	}
	budget := maxVisit
	var rec func(n *yaml.Node, path, key, parentKey string, depth int) bool
	rec = func(n *yaml.Node, path, key, parentKey string, depth int) bool {
		n = deref(n)
		budget--
		if n == nil || depth > 64 || budget < 0 {
			return false
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				p := k
				if strings.ContainsAny(k, ".[]/ ") {
					p = "[" + k + "]"
				} else if path != "" {
					p = "." + k
				}
				if rec(n.Content[i+1], path+p, k, key, depth+1) {
					return true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if rec(c, path+"["+strconv.Itoa(i)+"]", key, parentKey, depth+1) {
					return true
				}
			}
		case yaml.ScalarNode:
			return fn(path, n, key, parentKey)
		}
		return false
	}
	rec(root, "", "", "", 0)
}
