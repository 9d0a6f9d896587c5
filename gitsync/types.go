package gitsync

import (
	"time"

	"github.com/keelson/keelson/manifest"
)

// Commit describes one commit of the source.
type Commit struct {
	SHA     string    `json:"sha"`
	Author  string    `json:"author"`
	Email   string    `json:"email"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// Revision is one commit of the source and its files under the source's
// sub-path. Files are read lazily from the object store.
type Revision struct {
	Commit Commit
	// Ref is what the source follows ("refs/heads/main", "refs/tags/v1", or a SHA).
	Ref   string
	Files []manifest.File
}
