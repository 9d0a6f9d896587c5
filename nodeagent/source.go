package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/manifest"
)

// PodSource gives the pods the node must run.
type PodSource interface {
	// Run calls update with the whole desired set each time it changes,
	// until ctx ends. Pods have their UID set.
	Run(ctx context.Context, update func(Desired)) error
}

// Desired is the state a source asks for: pods and the config they refer to.
type Desired struct {
	Pods       []*corev1.Pod
	ConfigMaps []*corev1.ConfigMap
	Secrets    []*corev1.Secret
	// Issues are the source's errors and warnings (a bad manifest).
	Issues []manifest.Issue
	// Rejected is set when the source has errors: the pods above are then
	// empty and the agent keeps running the last good set.
	Rejected bool
}

// DirSource runs the Pod manifests of a directory, as kubelet runs static
// pods: every Pod in the directory runs, editing a file replaces its pod,
// removing it stops the pod. A pod's UID is derived from its manifest, so an
// edited pod is a new pod.
type DirSource struct {
	Dir string
	Log *slog.Logger
	// Debounce groups editor writes; default 100 ms.
	Debounce time.Duration
}

// Run implements PodSource.
func (s *DirSource) Run(ctx context.Context, update func(Desired)) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	debounce := s.Debounce
	if debounce == 0 {
		debounce = 100 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.Dir, err)
	}
	defer w.Close()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("pod manifests %s: %w", s.Dir, err)
	}
	watchTree := func() {
		_ = filepath.WalkDir(s.Dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = w.Add(p)
			}
			return nil
		})
	}
	watchTree()
	loader := manifest.NewLoader(manifest.Options{})
	load := func() {
		d, err := loadDir(loader, s.Dir)
		if err != nil {
			log.Error("read pod manifests", "dir", s.Dir, "err", err)
			return
		}
		for _, is := range d.Issues {
			if is.Severity == manifest.SeverityError {
				log.Warn("pod manifest rejected; running pods keep running", "issue", is.String())
			}
		}
		update(d)
	}
	load()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&fsnotify.Create != 0 {
				watchTree()
			}
			timer = time.After(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watch pod manifests", "dir", s.Dir, "err", err)
		case <-timer:
			timer = nil
			load()
		}
	}
}

// loadDir decodes a directory of manifests into the desired pods. A
// directory with any error is Rejected as a whole, as a Git revision is.
func loadDir(loader *manifest.Loader, dir string) (Desired, error) {
	files, err := manifest.DirFiles(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Desired{}, err
	}
	res := loader.Load(files)
	d := Desired{Issues: append(append([]manifest.Issue{}, res.Errors...), res.Warnings...)}
	if !res.OK() {
		d.Rejected = true
		return d, nil
	}
	for _, o := range res.Objects {
		switch obj := o.Obj.(type) {
		case *corev1.Pod:
			p := obj.DeepCopy()
			if p.Namespace == "" {
				p.Namespace = "default"
			}
			// The UID of a static pod is its manifest's hash: an edit is a new pod.
			p.UID = types.UID(podUID(o.Hash))
			d.Pods = append(d.Pods, p)
		case *corev1.ConfigMap:
			d.ConfigMaps = append(d.ConfigMaps, obj)
		case *corev1.Secret:
			d.Secrets = append(d.Secrets, obj)
		}
	}
	return d, nil
}

// podUID shapes a content hash like a UID.
func podUID(hash string) string {
	const n = 32
	if len(hash) < n {
		return hash
	}
	h := hash[:n]
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
