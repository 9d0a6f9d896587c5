package nodeagent

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/nodeagent/runtime"
)

// Volumes live under <podDir>/volumes/<name>. The agent sets up every
// volume of a pod before any of its containers starts (as kubelet does:
// one missing ConfigMap holds the whole pod), again before each start
// (idempotent), and rewrites configMap, secret, projected and downwardAPI
// volumes in place when their sources change (refreshVolumes), the way
// kubelet's AtomicWriter does: the files are in a timestamped directory,
// `..data` points to it, and each top-level name is a symlink through
// `..data`; an update writes a new directory and renames a new `..data`
// over the old one, so a running container sees all keys change at once.
//
// The agent mounts tmpfs for emptyDir{medium: Memory} and for secret and
// projected volumes (secret values never touch the disk). Those mounts are
// detached when the pod is removed (releaseVolumes) and when the agent finds
// the directory of a pod that was removed while it was down.
//
// All of it is serialised by Agent.volMu: a worker starting a container
// and the agent refreshing after a config change may touch the same pod.

const (
	defaultVolumeMode = 0o644
	// secretTmpfsSize bounds the tmpfs of one secret or projected volume:
	// a Secret is at most 1 MiB and an update briefly holds two copies.
	secretTmpfsSize = "4m"
	maxPathLength   = 4096
	maxNameLength   = 255
)

// preparedVolume is a volume set up on the node.
type preparedVolume struct {
	path string
	// apiData volumes (configMap, secret, projected, downwardAPI) are
	// mounted read-only, whatever the volumeMount says, as kubelet does.
	apiData bool
	// create: a missing subPath is created (emptyDir, hostPath).
	create bool
}

// volumeError is a volume that cannot be set up; the pod does not start.
type volumeError struct {
	volume string
	err    error
}

func (e *volumeError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q: %v", e.volume, e.err)
}

func (e *volumeError) Unwrap() error { return e.err }

// specFor builds the runtime spec of a container with what the node holds
// for it: the pod's volumes (set up now), ConfigMaps and Secrets for its
// environment, and the pod's real IP. Its errors are configuration errors
// (CreateContainerConfigError) naming what is missing; volume failures are
// also FailedMount events.
func (w *podWorker) specFor(pod *corev1.Pod, c *corev1.Container, restarts int, netns, logPath string) (runtime.ContainerSpec, error) {
	a := w.a
	vols, err := a.prepareVolumes(pod)
	if err != nil {
		a.event(pod, corev1.EventTypeWarning, "FailedMount", err.Error())
		return runtime.ContainerSpec{}, err
	}
	in := envInputs{
		pod:     pod,
		hostIP:  a.HostIP,
		configs: a.configs,
		node:    a.nodeResources(),
		warn: func(reason, msg string) {
			a.event(pod, corev1.EventTypeWarning, reason, msg)
		},
	}
	if pod.Spec.HostNetwork {
		in.podIP = a.HostIP
	} else if w.sandbox != nil {
		in.podIP = w.sandbox.IP.String()
	}
	spec, vars, err := buildSpec(in, c, restarts, netns, w.files, logPath)
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	mounts, err := containerMounts(c, vols, vars)
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	spec.Mounts = append(spec.Mounts, mounts...)
	return spec, nil
}

// nodeResources is the node's allocatable CPU and memory, read once.
func (a *Agent) nodeResources() nodeResources {
	a.nodeResOnce.Do(func() {
		a.nodeRes = nodeResources{cpuMilli: int64(goruntime.NumCPU()) * 1000, memory: MemoryTotal()}
	})
	return a.nodeRes
}

// volumeDir is where a pod's volume lives on the node.
func (a *Agent) volumeDir(pod *corev1.Pod, name string) string {
	return filepath.Join(a.podDir(pod), "volumes", name)
}

// prepareVolumes sets up every volume of the pod and returns them by name.
func (a *Agent) prepareVolumes(pod *corev1.Pod) (map[string]preparedVolume, error) {
	a.volMu.Lock()
	defer a.volMu.Unlock()
	if a.volGone[pod.UID] {
		return nil, fmt.Errorf("pod %s/%s is being removed", pod.Namespace, pod.Name)
	}
	out := make(map[string]preparedVolume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		pv, err := a.setUpVolume(pod, v)
		if err != nil {
			return nil, &volumeError{volume: v.Name, err: err}
		}
		out[v.Name] = pv
	}
	return out, nil
}

func (a *Agent) setUpVolume(pod *corev1.Pod, v *corev1.Volume) (preparedVolume, error) {
	dir := a.volumeDir(pod, v.Name)
	switch {
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return preparedVolume{}, err
		}
		switch v.EmptyDir.Medium {
		case corev1.StorageMediumDefault:
		case corev1.StorageMediumMemory:
			opts := "mode=0777"
			if v.EmptyDir.SizeLimit != nil && !v.EmptyDir.SizeLimit.IsZero() {
				opts += ",size=" + strconv.FormatInt(v.EmptyDir.SizeLimit.Value(), 10)
			}
			if err := ensureTmpfs(dir, opts); err != nil {
				return preparedVolume{}, err
			}
		default:
			return preparedVolume{}, fmt.Errorf("emptyDir medium %q is not supported", v.EmptyDir.Medium)
		}
		// World-writable, as kubelet makes emptyDirs, for non-root users.
		// With an fsGroup the top belongs to the group and has the setgid
		// bit, so that what the containers create in it belongs to the group
		// too. Only the top: the agent, as root, never walks what containers
		// wrote.
		mode := fs.FileMode(0o777)
		if gid := fsGroup(pod); gid >= 0 {
			if err := os.Chown(dir, -1, gid); err != nil {
				return preparedVolume{}, fmt.Errorf("fsGroup %d: %w", gid, err)
			}
			mode |= fs.ModeSetgid
		}
		if err := os.Chmod(dir, mode); err != nil {
			return preparedVolume{}, err
		}
		return preparedVolume{path: dir, create: true}, nil
	case v.HostPath != nil:
		typ := corev1.HostPathUnset
		if v.HostPath.Type != nil {
			typ = *v.HostPath.Type
		}
		if err := checkHostPath(v.HostPath.Path, typ); err != nil {
			return preparedVolume{}, err
		}
		return preparedVolume{path: v.HostPath.Path, create: true}, nil
	case v.ConfigMap != nil, v.Secret != nil, v.Projected != nil, v.DownwardAPI != nil:
		payload, err := a.volumePayload(pod, v)
		if err != nil {
			return preparedVolume{}, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return preparedVolume{}, err
		}
		if onTmpfs(v) {
			if err := ensureTmpfs(dir, "mode=0755,size="+secretTmpfsSize); err != nil {
				return preparedVolume{}, err
			}
		}
		gid := fsGroup(pod)
		if gid >= 0 {
			if err := setOwnership(dir, gid, true); err != nil {
				return preparedVolume{}, fmt.Errorf("fsGroup %d: %w", gid, err)
			}
		}
		if _, err := writeAtomic(dir, payload, a.now(), gid); err != nil {
			return preparedVolume{}, err
		}
		return preparedVolume{path: dir, apiData: true}, nil
	}
	return preparedVolume{}, fmt.Errorf("volume type is not supported by this agent (emptyDir, hostPath, configMap, secret, projected and downwardAPI are)")
}

// fsGroup is the pod's securityContext.fsGroup, or -1 when it has none.
func fsGroup(pod *corev1.Pod) int {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		return int(*sc.FSGroup)
	}
	return -1
}

// setVolumeOwnership gives what the agent wrote for a volume to the pod's
// fsGroup as kubelet does: every file and directory (symlinks too,
// themselves) belongs to the group, which may read it; directories get the
// setgid bit. It walks only trees the agent wrote and containers cannot
// change (a new data directory of a read-only volume, before it is put in
// place).
func setVolumeOwnership(dir string, gid int, readOnly bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return os.Lchown(p, -1, gid)
		}
		return setOwnership(p, gid, readOnly)
	})
}

// setOwnership gives one file or directory to group gid: read (readOnly)
// or read and write for the group, and setgid and search for directories.
func setOwnership(p string, gid int, readOnly bool) error {
	if err := os.Lchown(p, -1, gid); err != nil {
		return err
	}
	info, err := os.Lstat(p)
	if err != nil {
		return err
	}
	mask := fs.FileMode(0o660)
	if readOnly {
		mask = 0o440
	}
	if info.IsDir() {
		mask |= fs.ModeSetgid | 0o110
	}
	if want := info.Mode() | mask; want != info.Mode() {
		return os.Chmod(p, want)
	}
	return nil
}

// onTmpfs: volumes that may hold secrets are kept in memory.
func onTmpfs(v *corev1.Volume) bool { return v.Secret != nil || v.Projected != nil }

// refreshVolumes rewrites the pod's configMap, secret, projected and
// downwardAPI volumes that are set up and whose content changed. A source
// that went missing leaves the files as they were (and is an event).
func (a *Agent) refreshVolumes(pod *corev1.Pod) {
	a.volMu.Lock()
	defer a.volMu.Unlock()
	if a.volGone[pod.UID] {
		return
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.ConfigMap == nil && v.Secret == nil && v.Projected == nil && v.DownwardAPI == nil {
			continue
		}
		dir := a.volumeDir(pod, v.Name)
		if _, err := os.Lstat(filepath.Join(dir, dataLink)); err != nil {
			continue // not set up yet: the next start does it
		}
		if onTmpfs(v) && !isMountPoint(dir) {
			continue
		}
		payload, err := a.volumePayload(pod, v)
		if err != nil {
			a.event(pod, corev1.EventTypeWarning, "FailedMount", (&volumeError{volume: v.Name, err: err}).Error()+" (the volume keeps its last content)")
			continue
		}
		changed, err := writeAtomic(dir, payload, a.now(), fsGroup(pod))
		if err != nil {
			a.event(pod, corev1.EventTypeWarning, "FailedMount", (&volumeError{volume: v.Name, err: err}).Error())
			continue
		}
		if changed {
			a.log.Info("volume updated", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name)
		}
	}
}

// releaseVolumes is called when a pod is being removed: no volume of it is
// set up again, and what the agent mounted for it is detached (containers
// that still run keep their own view until they stop).
func (a *Agent) releaseVolumes(pod *corev1.Pod) {
	a.volMu.Lock()
	defer a.volMu.Unlock()
	a.volGone[pod.UID] = true
	if err := unmountUnder(a.podDir(pod)); err != nil {
		a.log.Warn("unmount pod volumes", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// forgetVolumes is called once the pod is gone.
func (a *Agent) forgetVolumes(pod *corev1.Pod) {
	a.volMu.Lock()
	defer a.volMu.Unlock()
	delete(a.volGone, pod.UID)
	dir := a.podDir(pod)
	if mps, _ := mountPointsUnder(dir); len(mps) > 0 {
		if err := unmountUnder(dir); err != nil {
			a.log.Warn("unmount pod volumes", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
		_ = os.RemoveAll(dir)
	}
}

// cleanupPodDirs removes the directories (and mounts) of pods that are not
// desired, left by pods removed while the agent was down.
func (a *Agent) cleanupPodDirs(desired map[types.UID]bool) {
	root := filepath.Join(a.DataDir, "pods")
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '_')
		if !e.IsDir() || i < 0 || desired[types.UID(e.Name()[i+1:])] {
			continue
		}
		dir := filepath.Join(root, e.Name())
		a.volMu.Lock()
		err := unmountUnder(dir)
		a.volMu.Unlock()
		if err != nil {
			a.log.Warn("unmount volumes of a removed pod", "dir", dir, "err", err)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			a.log.Warn("remove directory of a removed pod", "dir", dir, "err", err)
		}
	}
}

// checkHostPath applies a hostPath volume's type, creating what the
// OrCreate types ask for.
func checkHostPath(p string, typ corev1.HostPathType) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("hostPath %q is not an absolute path", p)
	}
	fi, err := os.Stat(p)
	exists := err == nil
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("hostPath %s: %w", p, err)
	}
	fail := func(what string) error { return fmt.Errorf("hostPath type check failed: %s is not %s", p, what) }
	missing := func() error { return fmt.Errorf("hostPath type check failed: %s does not exist (type %s)", p, typ) }
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			return os.MkdirAll(p, 0o755)
		}
		if !fi.IsDir() {
			return fail("a directory")
		}
	case corev1.HostPathDirectory:
		if !exists {
			return missing()
		}
		if !fi.IsDir() {
			return fail("a directory")
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return fmt.Errorf("hostPath %s: %w", p, err)
			}
			return f.Close()
		}
		if !fi.Mode().IsRegular() {
			return fail("a file")
		}
	case corev1.HostPathFile:
		if !exists {
			return missing()
		}
		if !fi.Mode().IsRegular() {
			return fail("a file")
		}
	case corev1.HostPathSocket:
		if !exists {
			return missing()
		}
		if fi.Mode()&fs.ModeSocket == 0 {
			return fail("a socket")
		}
	case corev1.HostPathCharDev:
		if !exists {
			return missing()
		}
		if fi.Mode()&fs.ModeCharDevice == 0 {
			return fail("a character device")
		}
	case corev1.HostPathBlockDev:
		if !exists {
			return missing()
		}
		if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
			return fail("a block device")
		}
	default:
		return fmt.Errorf("hostPath type %q is not valid", typ)
	}
	return nil
}

// fileProjection is one file of an API data volume.
type fileProjection struct {
	data []byte
	mode int32
}

// volumePayload is the content of a configMap, secret, projected or
// downwardAPI volume now.
func (a *Agent) volumePayload(pod *corev1.Pod, v *corev1.Volume) (map[string]fileProjection, error) {
	switch {
	case v.ConfigMap != nil:
		src := v.ConfigMap
		cm := a.configs.configMap(pod.Namespace, src.Name)
		if cm == nil {
			if isOptional(src.Optional) {
				return map[string]fileProjection{}, nil
			}
			return nil, fmt.Errorf("configmap %q not found", src.Name)
		}
		return keyPayload("configmap", src.Name, configMapData(cm), src.Items, modeOr(src.DefaultMode), isOptional(src.Optional))
	case v.Secret != nil:
		src := v.Secret
		s := a.configs.secret(pod.Namespace, src.SecretName)
		if s == nil {
			if isOptional(src.Optional) {
				return map[string]fileProjection{}, nil
			}
			return nil, fmt.Errorf("secret %q not found", src.SecretName)
		}
		return keyPayload("secret", src.SecretName, s.Data, src.Items, modeOr(src.DefaultMode), isOptional(src.Optional))
	case v.DownwardAPI != nil:
		return downwardPayload(pod, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode), a.nodeResources())
	case v.Projected != nil:
		mode := modeOr(v.Projected.DefaultMode)
		out := map[string]fileProjection{}
		for _, src := range v.Projected.Sources {
			var part map[string]fileProjection
			var err error
			switch {
			case src.ConfigMap != nil:
				cm := a.configs.configMap(pod.Namespace, src.ConfigMap.Name)
				if cm == nil {
					if isOptional(src.ConfigMap.Optional) {
						continue
					}
					return nil, fmt.Errorf("configmap %q not found", src.ConfigMap.Name)
				}
				part, err = keyPayload("configmap", src.ConfigMap.Name, configMapData(cm), src.ConfigMap.Items, mode, isOptional(src.ConfigMap.Optional))
			case src.Secret != nil:
				s := a.configs.secret(pod.Namespace, src.Secret.Name)
				if s == nil {
					if isOptional(src.Secret.Optional) {
						continue
					}
					return nil, fmt.Errorf("secret %q not found", src.Secret.Name)
				}
				part, err = keyPayload("secret", src.Secret.Name, s.Data, src.Secret.Items, mode, isOptional(src.Secret.Optional))
			case src.DownwardAPI != nil:
				part, err = downwardPayload(pod, src.DownwardAPI.Items, mode, a.nodeResources())
			case src.ServiceAccountToken != nil:
				// There is no API server issuing tokens yet: the path is left out.
				continue
			default:
				return nil, fmt.Errorf("projected volume source is not supported by this agent")
			}
			if err != nil {
				return nil, err
			}
			for p, f := range part {
				if _, dup := out[p]; dup {
					return nil, fmt.Errorf("projected path %q is given by more than one source", p)
				}
				out[p] = f
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("not an API data volume")
}

func modeOr(m *int32) int32 {
	if m == nil {
		return defaultVolumeMode
	}
	return *m
}

func configMapData(cm *corev1.ConfigMap) map[string][]byte {
	out := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	return out
}

// keyPayload is the files of a ConfigMap's or Secret's data: every key
// under its own name with defaultMode, or the items (key → path, with their
// own mode). A missing item key is an error unless the source is optional.
// Errors name the object and key, never a value.
func keyPayload(kind, name string, data map[string][]byte, items []corev1.KeyToPath, defaultMode int32, optional bool) (map[string]fileProjection, error) {
	out := map[string]fileProjection{}
	if len(items) == 0 {
		for k, v := range data {
			if err := validatePath(k); err != nil {
				return nil, fmt.Errorf("%s %q: key %q: %w", kind, name, k, err)
			}
			out[k] = fileProjection{data: v, mode: defaultMode}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("key %q not found in %s %q", it.Key, kind, name)
		}
		if err := validatePath(it.Path); err != nil {
			return nil, fmt.Errorf("%s %q: item %q: %w", kind, name, it.Key, err)
		}
		mode := defaultMode
		if it.Mode != nil {
			mode = *it.Mode
		}
		out[path.Clean(it.Path)] = fileProjection{data: v, mode: mode}
	}
	return out, nil
}

// downwardPayload is the files of downward API items.
func downwardPayload(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode int32, node nodeResources) (map[string]fileProjection, error) {
	out := map[string]fileProjection{}
	for _, it := range items {
		if err := validatePath(it.Path); err != nil {
			return nil, fmt.Errorf("downwardAPI item: %w", err)
		}
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			switch fp := it.FieldRef.FieldPath; {
			case fp == "metadata.name", fp == "metadata.namespace", fp == "metadata.uid",
				fp == "metadata.labels", fp == "metadata.annotations":
				v, err = fieldRefValue(pod, fp, "", "")
			default:
				if k, ok := subscript(fp, "metadata.labels"); ok {
					v = pod.Labels[k]
				} else if k, ok := subscript(fp, "metadata.annotations"); ok {
					v = pod.Annotations[k]
				} else {
					err = fmt.Errorf("fieldRef %q is not supported in a downwardAPI volume", fp)
				}
			}
		case it.ResourceFieldRef != nil:
			ref := it.ResourceFieldRef
			c := findContainer(pod, ref.ContainerName)
			if c == nil {
				return nil, fmt.Errorf("downwardAPI item %q: container %q not found", it.Path, ref.ContainerName)
			}
			v, err = resourceValue(c, ref.Resource, ref.Divisor, node)
		default:
			err = fmt.Errorf("no fieldRef or resourceFieldRef")
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
		mode := defaultMode
		if it.Mode != nil {
			mode = *it.Mode
		}
		out[path.Clean(it.Path)] = fileProjection{data: []byte(v), mode: mode}
	}
	return out, nil
}

// validatePath checks a path inside an API data volume as kubelet does:
// relative, no `..` element, not starting with `..`, bounded lengths.
func validatePath(p string) error {
	if p == "" {
		return fmt.Errorf("invalid path: must not be empty")
	}
	if path.IsAbs(p) {
		return fmt.Errorf("invalid path %q: must be relative", p)
	}
	if len(p) > maxPathLength {
		return fmt.Errorf("invalid path: longer than %d characters", maxPathLength)
	}
	parts := strings.Split(p, "/")
	for _, s := range parts {
		if s == ".." {
			return fmt.Errorf("invalid path %q: must not contain '..'", p)
		}
		if len(s) > maxNameLength {
			return fmt.Errorf("invalid path %q: an element is longer than %d characters", p, maxNameLength)
		}
	}
	if strings.HasPrefix(parts[0], "..") {
		return fmt.Errorf("invalid path %q: must not start with '..'", p)
	}
	return nil
}

const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
)

// writeAtomic makes dir hold exactly payload, as kubelet's AtomicWriter
// does, and reports whether anything changed. See the top of this file.
// With gid not negative (the pod's fsGroup), new files are given to that
// group before they are put in place.
func writeAtomic(dir string, payload map[string]fileProjection, now time.Time, gid int) (bool, error) {
	for p := range payload {
		if err := validatePath(p); err != nil {
			return false, err
		}
	}
	old, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !os.IsNotExist(err) {
		return false, err
	}
	if old != "" && sameContent(filepath.Join(dir, old), payload) {
		if err := linkTopLevel(dir, payload); err != nil {
			return false, err
		}
		return false, nil
	}
	ts, err := os.MkdirTemp(dir, now.UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return false, err
	}
	for p, f := range payload {
		full := filepath.Join(ts, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.data, os.FileMode(f.mode)&os.ModePerm); err != nil {
			return false, err
		}
		if err := os.Chmod(full, os.FileMode(f.mode)&os.ModePerm); err != nil {
			return false, err
		}
	}
	if gid >= 0 {
		// The pod's fsGroup, before the files are put in place: a reader in
		// the group never sees them without its access.
		if err := setVolumeOwnership(ts, gid, true); err != nil {
			return false, fmt.Errorf("fsGroup %d: %w", gid, err)
		}
	}
	tmp := filepath.Join(dir, dataLinkTmp)
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return false, err
	}
	if err := linkTopLevel(dir, payload); err != nil {
		return true, err
	}
	if old != "" && old != filepath.Base(ts) && strings.HasPrefix(old, "..") && !strings.Contains(old, "/") {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return true, err
		}
	}
	return true, nil
}

// linkTopLevel makes `name -> ..data/name` for each top-level name of the
// payload and removes the links of names it no longer has.
func linkTopLevel(dir string, payload map[string]fileProjection) error {
	want := map[string]bool{}
	for p := range payload {
		top, _, _ := strings.Cut(p, "/")
		want[top] = true
	}
	for top := range want {
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(dataLink, top), link); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") || want[e.Name()] || e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// sameContent reports whether dir holds exactly payload (data and modes).
func sameContent(dir string, payload map[string]fileProjection) bool {
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, ok := payload[filepath.ToSlash(rel)]
		if !ok {
			return fs.ErrNotExist
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != os.FileMode(f.mode)&os.ModePerm {
			return fs.ErrInvalid
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, f.data) {
			return fs.ErrInvalid
		}
		seen++
		return nil
	})
	return err == nil && seen == len(payload)
}

// containerMounts are the runtime mounts of a container's volumeMounts.
// A subPath (or subPathExpr, expanded with the container's variables) is
// resolved inside its volume: `..` elements and absolute paths are
// refused, and so is a path whose symlinks lead out of the volume. The
// resolved file or directory is what is bound, so a subPath of a configMap
// key keeps the content it had when the container started (as in
// Kubernetes).
func containerMounts(c *corev1.Container, vols map[string]preparedVolume, vars map[string]string) ([]runtime.Mount, error) {
	var out []runtime.Mount
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("container %s: volumeMount %q: no volume of that name in the pod", c.Name, vm.Name)
		}
		if !path.IsAbs(vm.MountPath) {
			return nil, fmt.Errorf("container %s: volumeMount %q: mountPath %q is not absolute", c.Name, vm.Name, vm.MountPath)
		}
		src := v.path
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expand(vm.SubPathExpr, vars)
		}
		if sub != "" {
			p, err := resolveSubPath(v.path, sub, v.create)
			if err != nil {
				return nil, fmt.Errorf("container %s: volumeMount %q: %w", c.Name, vm.Name, err)
			}
			src = p
		}
		out = append(out, runtime.Mount{Source: src, Destination: vm.MountPath, Type: "bind", ReadOnly: vm.ReadOnly || v.apiData})
	}
	return out, nil
}

// resolveSubPath is the file or directory sub names inside root. When
// create is set, a missing subPath becomes a directory (as kubelet does for
// emptyDir and hostPath).
func resolveSubPath(root, sub string, create bool) (string, error) {
	if path.IsAbs(sub) {
		return "", fmt.Errorf("subPath %q must be a relative path", sub)
	}
	for _, s := range strings.Split(sub, "/") {
		if s == ".." {
			return "", fmt.Errorf("subPath %q must not contain '..'", sub)
		}
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("subPath %q: volume: %w", sub, err)
	}
	// Symlinks are resolved within the volume (the path cannot leave it),
	// and one that points outside is refused rather than clamped.
	safe, err := securejoin.SecureJoin(realRoot, sub)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	real, err := evalExisting(realRoot, filepath.Join(realRoot, sub))
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	if real != safe || !within(realRoot, real) {
		return "", fmt.Errorf("subPath %q resolves to %s, outside its volume", sub, real)
	}
	if _, err := os.Stat(safe); os.IsNotExist(err) {
		if !create {
			return "", fmt.Errorf("subPath %q does not exist in its volume", sub)
		}
		if err := os.MkdirAll(safe, 0o755); err != nil {
			return "", fmt.Errorf("subPath %q: %w", sub, err)
		}
	}
	return safe, nil
}

// evalExisting resolves the symlinks of the longest existing prefix of p
// (below root) and appends the rest. A dangling symlink is an error.
func evalExisting(root, p string) (string, error) {
	rest := ""
	for cur := p; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !os.IsNotExist(err) {
			return "", err
		}
		if fi, lerr := os.Lstat(cur); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%s is a symlink to a path that does not exist", cur)
		}
		parent := filepath.Dir(cur)
		if parent == cur || !within(root, parent) {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// ensureTmpfs mounts a tmpfs on dir unless one is there.
func ensureTmpfs(dir, opts string) error {
	if isMountPoint(dir) {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

func isMountPoint(dir string) bool {
	mps, err := mountPointsUnder(dir)
	if err != nil {
		return false
	}
	for _, m := range mps {
		if m == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

// mountPointsUnder lists the mount points at or below dir, deepest first.
func mountPointsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if within(dir, mp) {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or below dir.
func unmountUnder(dir string) error {
	mps, err := mountPointsUnder(dir)
	if err != nil {
		return err
	}
	var first error
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && err != unix.EINVAL && first == nil {
			first = fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return first
}
