package manifest

import (
	"fmt"
	"io/fs"

	"k8s.io/apimachinery/pkg/runtime"
)

// File is one file of a revision, as the Git tree or a working directory
// holds it. Files are named by slash-separated paths relative to the root the
// manifests are read from (the source's sub-path).
type File struct {
	Path string
	// Hash identifies the content: the Git blob SHA for files from a commit,
	// a content hash for files from a directory. The Loader caches decoded
	// results by it, so a file that did not change is not decoded again.
	Hash string
	Size int64
	// Mode is fs.ModeSymlink for symbolic links, 0 for regular files.
	Mode fs.FileMode
	// Target is the link target of a symlink, as stored in the tree.
	Target string
	// Read returns the content. It is called at most once per Load and only
	// when the decoded result is not cached.
	Read func() ([]byte, error)
}

// Severity of an Issue.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Issue is one finding about a revision: an error that rejects it, or a
// warning that does not. Its String form is the one editors and CI
// annotations understand: "path/to/file.yaml:LINE: Kind/name: field: message".
type Issue struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	// Object is "Kind/name" or "Kind/namespace/name"; empty when the issue is
	// about the file rather than an object in it.
	Object  string `json:"object,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (i Issue) String() string {
	s := i.File
	if i.Line > 0 {
		s += fmt.Sprintf(":%d", i.Line)
	}
	s += ": "
	if i.Object != "" {
		s += i.Object + ": "
	}
	if i.Field != "" {
		s += i.Field + ": "
	}
	return s + i.Message
}

// Object is one decoded and validated desired object.
type Object struct {
	// APIVersion and Kind as they are served (the old workload forms are
	// converted, so a apps/v1beta1 Deployment arrives as apps/v1).
	APIVersion string
	Kind       string
	// Namespace is empty for cluster-scoped kinds and "default" for
	// namespaced objects that name none.
	Namespace string
	Name      string
	// Obj is the typed Kubernetes object (*corev1.Pod, *appsv1.Deployment,
	// ...), with TypeMeta set. Owned by the Object: never modify it.
	Obj runtime.Object
	// File and Line say where the object was declared (for kustomize output,
	// the kustomization.yaml).
	File string
	Line int
	// Hash is a digest of the object's canonical JSON; equal hashes mean
	// equal desired state.
	Hash string
}

// Key is the unique identity of an object in a revision: "Kind/namespace/name",
// or "Kind/name" for cluster-scoped kinds.
func (o *Object) Key() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

// Result is what loading a revision gives.
type Result struct {
	Objects  []*Object // sorted by Key
	Errors   []Issue   // any error rejects the whole revision
	Warnings []Issue
	// Decoded is how many files were decoded by this Load; the others came
	// from the cache.
	Decoded int
}

// OK reports whether the revision may be applied.
func (r *Result) OK() bool { return len(r.Errors) == 0 }
