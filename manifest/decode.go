package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// maxIssuesPerFile bounds the issues one file may produce, so that a file of
// a million broken documents does not produce a million issues.
const maxIssuesPerFile = 100

// decoded is one object with what is needed to point at its fields later
// (cross-file checks run on every Load, long after decoding).
type decoded struct {
	obj *Object
	loc *locator
}

// fileResult is what decoding one file gives. It depends only on the file's
// path and content, so the Loader caches it by File.Hash.
type fileResult struct {
	objects []decoded
	issues  []Issue // errors and warnings, in file order
}

func (r *fileResult) add(is Issue) {
	if len(r.issues) == maxIssuesPerFile {
		r.issues = append(r.issues, Issue{Severity: SeverityError, File: is.File,
			Message: fmt.Sprintf("more than %d issues in this file; the rest are not shown", maxIssuesPerFile)})
	}
	if len(r.issues) > maxIssuesPerFile {
		return
	}
	r.issues = append(r.issues, is)
}

func (r *fileResult) errorf(file string, line int, object, field, format string, args ...any) {
	r.add(Issue{Severity: SeverityError, File: file, Line: line, Object: object, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (r *fileResult) full() bool { return len(r.issues) > maxIssuesPerFile }

// isManifestName reports whether a file name has a manifest extension.
func isManifestName(p string) bool {
	switch strings.ToLower(path.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// lineAt is the 1-based line of byte offset off in data.
func lineAt(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// checkText rejects content that is not UTF-8 text.
func checkText(file string, data []byte, r *fileResult) bool {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		r.errorf(file, lineAt(data, i), "", "", "binary file: NUL byte at offset %d; manifests must be UTF-8 text", i)
		return false
	}
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			c, size := utf8.DecodeRune(data[i:])
			if c == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		r.errorf(file, lineAt(data, i), "", "", "binary file: invalid UTF-8 at offset %d; manifests must be UTF-8 text", i)
		return false
	}
	return true
}

// decodeFile decodes every object of one manifest file.
func decodeFile(file string, data []byte) *fileResult {
	r := &fileResult{}
	if !checkText(file, data, r) {
		return r
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if strings.EqualFold(path.Ext(file), ".json") {
		decodeJSONFile(file, data, r)
		return r
	}
	for _, d := range splitYAML(data) {
		if r.full() {
			break
		}
		decodeYAMLDoc(file, d, r)
	}
	return r
}

// yamlDoc is one document of a multi-document YAML file.
type yamlDoc struct {
	data      []byte
	firstLine int // line of the file where data starts
	objLine   int // first line with content; 0 for an empty document
}

// splitYAML splits at "---" lines (optionally followed by a comment), as
// kubectl does, keeping line numbers.
func splitYAML(data []byte) []yamlDoc {
	var docs []yamlDoc
	start, startLine, objLine := 0, 1, 0
	line := 1
	for off := 0; off <= len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := 0
		if end < 0 {
			end = len(data)
			next = len(data) + 1
		} else {
			end += off
			next = end + 1
		}
		l := data[off:end]
		if bytes.HasPrefix(l, []byte("---")) {
			rest := strings.TrimSpace(string(l[3:]))
			if rest == "" || strings.HasPrefix(rest, "#") {
				docs = append(docs, yamlDoc{data: data[start:off], firstLine: startLine, objLine: objLine})
				start, startLine, objLine = min(next, len(data)), line+1, 0
				off = next
				line++
				continue
			}
		}
		if objLine == 0 {
			t := bytes.TrimSpace(l)
			if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("...")) && t[0] != '%' {
				objLine = line
			}
		}
		off = next
		line++
	}
	if start < len(data) {
		docs = append(docs, yamlDoc{data: data[start:], firstLine: startLine, objLine: objLine})
	}
	return docs
}

var yamlLineRe = regexp.MustCompile(`line (\d+): ?(.*)`)

func decodeYAMLDoc(file string, d yamlDoc, r *fileResult) {
	if d.objLine == 0 {
		return // only comments and blank lines
	}
	js, err := sigsyaml.YAMLToJSONStrict(d.data)
	if err != nil {
		line, msg := d.objLine, err.Error()
		msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
		msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				line = d.firstLine + n - 1
			}
			msg = "invalid YAML: " + strings.TrimSpace(m[2])
		} else {
			msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
		}
		if tl := tabIndentLine(d.data); tl > 0 && d.firstLine+tl-1 <= line {
			line = d.firstLine + tl - 1
			msg = "invalid YAML: tab character in indentation (YAML allows only spaces)"
		}
		r.errorf(file, line, "", "", "%s", msg)
		return
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return
	}
	loc := &locator{data: d.data, firstLine: d.firstLine, fallback: d.objLine}
	decodeValue(file, js, loc, d.objLine, r)
}

// tabIndentLine is the first line (1-based) whose indentation holds a tab,
// or 0.
func tabIndentLine(data []byte) int {
	for i, l := range bytes.Split(data, []byte("\n")) {
		for _, c := range l {
			if c == '\t' {
				return i + 1
			}
			if c != ' ' {
				break
			}
		}
	}
	return 0
}

func decodeJSONFile(file string, data []byte, r *fileResult) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for !r.full() {
		start := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			off := start
			var se *json.SyntaxError
			if errors.As(err, &se) {
				off = int(se.Offset)
			}
			r.errorf(file, lineAt(data, off), "", "", "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
			return
		}
		// The value starts after the whitespace preceding it.
		for start < len(data) && (data[start] == ' ' || data[start] == '\t' || data[start] == '\n' || data[start] == '\r') {
			start++
		}
		if bytes.Equal(raw, []byte("null")) {
			continue
		}
		line := lineAt(data, start)
		loc := &locator{data: raw, firstLine: line, fallback: line}
		decodeValue(file, raw, loc, line, r)
	}
}

// typeMeta is the part of an object read before its kind is known.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// objectRef is the "Kind/namespace/name" form issues use.
func objectRef(kind, namespace, name string) string {
	if kind == "" {
		return ""
	}
	if name == "" {
		return kind
	}
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// decodeValue decodes one JSON object (a document, a JSON value, or a List
// item), which may itself be a List.
func decodeValue(file string, js []byte, loc *locator, line int, r *fileResult) {
	if t := bytes.TrimSpace(js); len(t) == 0 || t[0] != '{' {
		r.errorf(file, line, "", "", "not a Kubernetes object: expected a mapping with apiVersion, kind and metadata")
		return
	}
	var tm typeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		}
		r.errorf(file, locLine(loc, field, line), "", field, "apiVersion, kind, metadata.name and metadata.namespace must be strings")
		return
	}
	if tm.Kind == "List" && (tm.APIVersion == "v1" || tm.APIVersion == "") {
		decodeList(file, js, loc, line, r)
		return
	}
	ref := objectRef(tm.Kind, tm.Metadata.Namespace, tm.Metadata.Name)
	if tm.APIVersion == "" || tm.Kind == "" {
		var missing []string
		if tm.APIVersion == "" {
			missing = append(missing, "apiVersion")
		}
		if tm.Kind == "" {
			missing = append(missing, "kind")
		}
		r.errorf(file, line, ref, strings.Join(missing, ", "), "Required value: every Kubernetes object needs apiVersion and kind")
		return
	}
	specs := knownKinds()
	spec, known := specs[tm.Kind]
	if known && spec.namespaced && tm.Metadata.Namespace == "" {
		ref = objectRef(tm.Kind, "default", tm.Metadata.Name)
	}
	if known && !spec.namespaced {
		ref = objectRef(tm.Kind, "", tm.Metadata.Name)
	}
	if !known {
		what := "unknown kind"
		if g, _, ok := strings.Cut(tm.APIVersion, "/"); ok && strings.Contains(g, ".") && !strings.HasSuffix(g, ".k8s.io") {
			what = "custom resources are not supported"
		}
		r.errorf(file, locLine(loc, "kind", line), ref, "kind", "%s: %s %q; Keelson knows %s", what, tm.APIVersion, tm.Kind, knownKindList())
		return
	}
	typed, old := newTyped(tm.APIVersion, tm.Kind)
	if typed == nil {
		served := []string{spec.served}
		if tm.Kind == "HorizontalPodAutoscaler" {
			served = append(served, "autoscaling/v1")
		}
		msg := fmt.Sprintf("%s is not served as %q: use apiVersion %s", tm.Kind, tm.APIVersion, strings.Join(served, " or "))
		if dep := deprecatedVersions(tm.Kind); len(dep) > 0 {
			msg += fmt.Sprintf(" (deprecated, still accepted: %s)", strings.Join(dep, ", "))
		}
		r.errorf(file, locLine(loc, "apiVersion", line), ref, "apiVersion", "%s", msg)
		return
	}
	if !strictDecode(file, js, typed, loc, line, ref, tm.Kind, r) {
		return
	}
	if old {
		conv, warn, err := convertOld(tm.APIVersion, tm.Kind, typed)
		if err != nil {
			r.errorf(file, line, ref, "apiVersion", "%v", err)
			return
		}
		r.add(Issue{Severity: SeverityWarning, File: file, Line: locLine(loc, "apiVersion", line), Object: ref, Field: "apiVersion", Message: warn})
		typed = conv
	}
	apiVersion := spec.served
	if tm.APIVersion == "autoscaling/v1" {
		apiVersion = tm.APIVersion
	}
	setTypeMeta(typed, apiVersion, tm.Kind)
	acc, ok := typed.(metav1.Object)
	if !ok {
		r.errorf(file, line, ref, "", "internal error: %T has no metadata", typed)
		return
	}
	ns := acc.GetNamespace()
	if spec.namespaced && ns == "" {
		ns = "default"
		acc.SetNamespace(ns)
	}
	if !spec.namespaced && ns != "" {
		r.errorf(file, locLine(loc, "metadata.namespace", line), ref, "metadata.namespace",
			"Forbidden: %s is cluster-scoped and must not set a namespace", tm.Kind)
		ns = ""
		acc.SetNamespace("")
	}
	if spec.noEffect {
		r.add(Issue{Severity: SeverityWarning, File: file, Line: locLine(loc, "kind", line), Object: ref, Field: "kind",
			Message: tm.Kind + " has no effect yet: Keelson stores it but does not act on it"})
	}
	errs := validateObject(tm.Kind, typed)
	for _, e := range errs {
		r.add(Issue{Severity: SeverityError, File: file, Line: locLine(loc, e.Field, line), Object: ref, Field: e.Field, Message: e.ErrorBody()})
	}
	canon, err := json.Marshal(typed)
	if err != nil {
		r.errorf(file, line, ref, "", "encoding object: %v", err)
		return
	}
	sum := sha256.Sum256(canon)
	obj := &Object{
		APIVersion: apiVersion,
		Kind:       tm.Kind,
		Namespace:  ns,
		Name:       acc.GetName(),
		Obj:        typed,
		File:       file,
		Line:       line,
		Hash:       hex.EncodeToString(sum[:]),
	}
	r.objects = append(r.objects, decoded{obj: obj, loc: loc})
}

// locLine is the line of field, or def when loc knows none.
func locLine(loc *locator, field string, def int) int {
	if loc == nil || field == "" {
		return def
	}
	if l := loc.line(field); l > 0 {
		return l
	}
	return def
}

func setTypeMeta(obj runtime.Object, apiVersion, kind string) {
	obj.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
}

func decodeList(file string, js []byte, loc *locator, line int, r *fileResult) {
	var list struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ListMeta   `json:"metadata"`
		Items      []json.RawMessage `json:"items"`
	}
	strict, err := sigsjson.UnmarshalStrict(js, &list)
	if err != nil {
		r.errorf(file, line, "List", "", "invalid List: %s", strings.TrimPrefix(err.Error(), "json: "))
		return
	}
	for _, e := range strict {
		f := fieldPathOf(e)
		r.errorf(file, locLine(loc, f, line), "List", f, "%s", strictMessage(e))
	}
	for i, item := range list.Items {
		if r.full() {
			return
		}
		if bytes.Equal(bytes.TrimSpace(item), []byte("null")) {
			continue
		}
		base := "items[" + strconv.Itoa(i) + "]"
		var iloc *locator
		itemLine := line
		if loc != nil {
			iloc = &locator{data: loc.data, firstLine: loc.firstLine, parent: loc, base: base, fallback: line}
			if l := iloc.objectLine(); l > 0 {
				itemLine = l
			}
			iloc.fallback = itemLine
		}
		decodeValue(file, item, iloc, itemLine, r)
	}
}

func fieldPathOf(err error) string {
	var fe sigsjson.FieldError
	if errors.As(err, &fe) {
		return strings.TrimPrefix(fe.FieldPath(), ".")
	}
	return ""
}

// strictMessage words a strict-decoding error without its path.
func strictMessage(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unknown field"):
		return "unknown field (check the spelling and the indentation)"
	case strings.HasPrefix(msg, "duplicate field"):
		return "duplicate field"
	}
	return msg
}

// strictDecode decodes js into typed, reporting unknown, duplicate and
// mistyped fields with their lines. It reports whether typed was decoded
// (possibly with strict errors already reported) and may be validated.
func strictDecode(file string, js []byte, typed runtime.Object, loc *locator, line int, ref, kind string, r *fileResult) bool {
	strict, err := sigsjson.UnmarshalStrict(js, typed)
	for _, e := range strict {
		f := fieldPathOf(e)
		r.errorf(file, locLine(loc, f, line), ref, f, "%s", strictMessage(e))
	}
	if err == nil {
		// Unknown or duplicate fields reject the revision, but the object
		// itself decoded: validate it too, so every error is reported.
		return true
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := jsonTypeName(te.Type.String())
		field, fline := te.Field, line
		if p, l, ok := loc.findTyped(te.Field, te.Value); ok {
			field, fline = p, l
		}
		r.errorf(file, fline, ref, field, "wrong type: got %s, want %s", te.Value, want)
		return false
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "quantities must match"):
		if p, l, v, ok := findBadScalar(loc, isQuantityField, func(s string) bool { _, err := resource.ParseQuantity(s); return err != nil }); ok {
			if i := strings.LastIndexByte(p, '.'); i >= 0 && !strings.HasSuffix(p, "sizeLimit") {
				p = p[:i] + "[" + p[i+1:] + "]"
			}
			r.errorf(file, l, ref, p, "Invalid value: %q: must be a quantity such as 500m, 2, 128Mi or 1Gi", v)
			return false
		}
		r.errorf(file, line, ref, "", "invalid quantity: must be a number with an optional suffix such as 500m, 128Mi or 1Gi")
		return false
	case strings.Contains(msg, "illegal base64"):
		if p, l, _, ok := findBadScalar(loc, func(_, parent string) bool { return parent == "data" || parent == "binaryData" },
			func(s string) bool { _, err := base64.StdEncoding.DecodeString(s); return err != nil }); ok {
			r.errorf(file, l, ref, p, "Invalid value: not valid base64 (use stringData for plain text)")
			return false
		}
		r.errorf(file, line, ref, "data", "Invalid value: not valid base64 (use stringData for plain text)")
		return false
	}
	field := ""
	if kind == "Secret" {
		// Never echo what might be a secret value.
		msg = "invalid value"
	}
	r.errorf(file, line, ref, field, "%s", strings.TrimPrefix(msg, "json: "))
	return false
}

// jsonTypeName words a Go type as the JSON type it accepts.
func jsonTypeName(goType string) string {
	switch {
	case goType == "string":
		return "string"
	case goType == "bool":
		return "boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "number"
	case strings.HasPrefix(goType, "[]uint8"):
		return "base64 string"
	case strings.HasPrefix(goType, "[]"):
		return "list"
	case strings.HasPrefix(goType, "map["):
		return "mapping"
	case goType == "intstr.IntOrString":
		return "number or string"
	}
	return "mapping (" + goType + ")"
}

// isQuantityField reports whether a scalar at path with the given parent key
// is a resource quantity.
func isQuantityField(key, parent string) bool {
	switch parent {
	case "requests", "limits", "capacity", "hard", "overhead", "max", "min", "default", "defaultRequest", "maxLimitRequestRatio":
		return true
	}
	return key == "sizeLimit"
}

// findBadScalar finds the first scalar for which match(key, parentKey) and
// bad(value) hold.
func findBadScalar(loc *locator, match func(key, parent string) bool, bad func(string) bool) (p string, line int, value string, ok bool) {
	if loc == nil {
		return "", 0, "", false
	}
	loc.visit(func(path string, n *yaml.Node, key, parent string) bool {
		if match(key, parent) && bad(n.Value) {
			p, line, value, ok = path, loc.firstLine+n.Line-1, n.Value, true
			return true
		}
		return false
	})
	return p, line, value, ok
}
