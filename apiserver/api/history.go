package api

import "time"

// History is the answer of GET /v1/history/{kind}/{namespace}/{name}: the
// commits that changed an object (not merely touched its file), newest
// first, with what became of each.
type History struct {
	Index  uint64 `json:"index"`
	Object string `json:"object"` // Kind/namespace/name
	// File is where the object is declared in the applied revision (for
	// kustomize output, the kustomization file).
	File string `json:"file"`
	// Paths are what the history follows in the repository: the file, or a
	// kustomization's directory and the bases it names.
	Paths []string       `json:"paths"`
	Items []HistoryEntry `json:"items"`
	// Truncated is set when older commits were not looked at.
	Truncated bool `json:"truncated,omitempty"`
}

// HistoryEntry is one commit that changed the object.
type HistoryEntry struct {
	SHA     string    `json:"sha"`
	Author  string    `json:"author"`
	Email   string    `json:"email,omitempty"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	// Change is Added, Changed, Removed, or Invalid (the object did not
	// decode at the commit).
	Change string `json:"change"`
	// Images are the images of the object's pod template at the commit.
	Images []string `json:"images,omitempty"`
	// Outcome is what became of the change: Progressing, Healthy,
	// Degraded, Superseded, RolledBack (as store.RolloutOutcome), Rejected
	// (the commit was not applied), Applied (applied; the kind has no
	// rollout) or Unknown.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// From says where the outcome comes from: OutcomeFromController (its
	// revision records), OutcomeFromNote (the commit's note in
	// refs/notes/keelson) or empty.
	From string `json:"from,omitempty"`
	// Current marks the commit whose version of the object is applied now.
	Current bool `json:"current,omitempty"`
}

// Outcomes of a HistoryEntry besides the rollout outcomes.
const (
	OutcomeRejected = "Rejected"
	OutcomeApplied  = "Applied"
	OutcomeUnknown  = "Unknown"
)

// Sources of a HistoryEntry's outcome.
const (
	OutcomeFromController = "controller"
	OutcomeFromNote       = "note"
)
