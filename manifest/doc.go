// Package manifest turns the files of a revision into typed, validated
// Kubernetes objects.
//
// Its job is the second step of Keelson's data flow (gitsync → manifest →
// reconciler): given the files of a commit or of a working directory, find the
// manifests (every *.yaml, *.yml and *.json outside hidden directories and
// not itself hidden, and the output of kustomization directories, whose
// files are not loaded on their own, as Flux does), decode them strictly into the
// real Kubernetes API types (k8s.io/api), and validate them as the Kubernetes
// API server would, so that a bad revision is rejected whole with every error
// named by file and line.
//
// Invariants:
//
//   - Load never panics and never stops at the first error: every error of a
//     revision is reported as an Issue that names a file (always), a line
//     (when one is known), the object and the field.
//   - A Result with any error must not be applied; its Objects are only
//     informative.
//   - Objects are sorted by Key, unique by Key, and immutable once returned:
//     the Loader may hand the same *Object to later Loads when its file did
//     not change.
//   - Secret values never appear in issues or diffs.
//   - Objects rendered by kustomize carry File = the kustomization file and
//     Line = 1; their field issues point there.
//   - No network access: remote kustomize bases are an error.
//   - The package has no global mutable state; a Loader is used by one
//     goroutine at a time and waits for the goroutines it starts before Load
//     returns.
package manifest
