package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	capability "github.com/containerd/containerd/pkg/cap"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Labels set on every container Start creates. They let an agent that restarted find and
// adopt its containers (see List).
const (
	LabelPodUID        = "keelson.dev/pod-uid"
	LabelPodName       = "keelson.dev/pod-name"
	LabelPodNamespace  = "keelson.dev/pod-namespace"
	LabelContainerName = "keelson.dev/container-name"
	LabelRestartCount  = "keelson.dev/restart-count"
	LabelLogPath       = "keelson.dev/log-path"
)

// ContainerSpec is what Start runs: one container of a pod, already resolved by the caller
// (image present, network namespace made, volumes prepared).
type ContainerSpec struct {
	PodUID       string
	PodName      string
	PodNamespace string
	// ContainerName is the name of the container in the pod.
	ContainerName string
	// RestartCount is part of the container ID, so every start gets a new container.
	RestartCount int

	// Image is a reference to an image present in containerd (see EnsureImage); it is
	// normalized with the usual rules (redis means docker.io/library/redis:latest).
	Image string
	// Command overrides the image's ENTRYPOINT and Args its CMD, as in Kubernetes.
	Command []string
	Args    []string
	// Env entries KEY=VALUE are added to (and override) the image's environment.
	Env        []string
	WorkingDir string
	TTY        bool
	// Stdin is not supported with log files (the shim writes the log); it is ignored.
	Stdin bool

	// NetNSPath is the pod's network namespace; empty means the host's.
	NetNSPath string
	Hostname  string
	// Mounts are added to the runtime's defaults (/proc, /dev, /sys, ...). The caller
	// provides /etc/hosts, /etc/resolv.conf and /etc/hostname as bind mounts if wanted
	// (also for host-network pods: nothing is taken from the host implicitly).
	Mounts []Mount

	Resources Resources
	Security  Security

	// LogPath receives stdout and stderr, appended by containerd's shim directly, so that
	// logging goes on while the agent is down. Empty discards output.
	LogPath string
	// Labels are extra container labels.
	Labels map[string]string
	// CgroupParent is the parent cgroup; empty means /<namespace>-<id of
	// the containerd>, so that containers of two agents on one machine never
	// share a cgroup even when their IDs are equal.
	CgroupParent string
}

// Mount is a bind or tmpfs mount into the container.
type Mount struct {
	Source      string
	Destination string
	Type        string // "bind" (default) or "tmpfs"
	ReadOnly    bool
	Options     []string
}

// Resources are cgroup limits, as kubelet maps a container's resources: limits.memory is
// MemoryLimit, limits.cpu is CPUQuota over CPUPeriod (100 ms), requests.cpu is CPUShares
// (see CPUShares and CPUQuota). Zero values mean unlimited / the default.
type Resources struct {
	MemoryLimit int64  // bytes
	CPUQuota    int64  // µs per CPUPeriod
	CPUPeriod   uint64 // µs; 100000 when zero and CPUQuota is set
	CPUShares   uint64
}

// CPUShares converts a CPU request in milli-CPUs to cgroup shares, as kubelet does
// (milliCPU*1024/1000, minimum 2).
func CPUShares(milliCPU int64) uint64 {
	if milliCPU <= 0 {
		return 2
	}
	s := uint64(milliCPU) * 1024 / 1000
	return max(s, 2)
}

// CPUQuota converts a CPU limit in milli-CPUs to a CFS quota over period µs, as kubelet does
// (minimum 1000 µs).
func CPUQuota(milliCPU int64, period uint64) int64 {
	q := milliCPU * int64(period) / 1000
	return max(q, 1000)
}

// Security is the container's securityContext, reduced to what the runtime applies.
type Security struct {
	RunAsUser                *int64
	RunAsGroup               *int64
	SupplementalGroups       []int64 // the pod's fsGroup and supplementalGroups: the process's additional groups
	RunAsNonRoot             bool    // refuse to start as root (see verifyNonRoot)
	ReadOnlyRootFS           bool
	Privileged               bool
	CapAdd                   []string // "NET_ADMIN" or "CAP_NET_ADMIN"; "ALL"
	CapDrop                  []string
	AllowPrivilegeEscalation *bool
}

// Container is a started container.
type Container struct {
	ID        string
	PID       uint32
	StartedAt time.Time
}

// ID is the container ID Start uses for this spec.
func (s *ContainerSpec) ID() string {
	return ContainerID(s.PodUID, s.ContainerName, s.RestartCount)
}

var validID = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// ContainerID is podUID-name-restartCount, or a hash of podUID and name followed by the
// restart count where that would not be a valid containerd ID (76 characters at most).
func ContainerID(podUID, name string, restart int) string {
	id := fmt.Sprintf("%s-%s-%d", podUID, name, restart)
	if len(id) <= 76 && validID.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(podUID + "/" + name))
	return fmt.Sprintf("%s-%d", hex.EncodeToString(sum[:20]), restart)
}

// Start creates and starts the container of spec: a new snapshot of its image, a task
// whose stdout and stderr append to spec.LogPath, and returns once the process runs. The
// container's exit is watched from before it starts (see Wait). If the command is not in
// the image the error wraps ErrCommandNotFound; on any failure nothing is left behind.
func (r *Runtime) Start(ctx context.Context, spec ContainerSpec) (*Container, error) {
	ctx = r.ctx(ctx)
	id := spec.ID()
	ref, err := NormalizeRef(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	image, err := r.client.GetImage(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("container %s: image %s: %w", id, ref, classify(err))
	}
	imgSpec, err := image.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("container %s: image %s config: %w", id, ref, classify(err))
	}
	if err := verifyNonRoot(spec.Security, imgSpec.Config.User); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	args := processArgs(imgSpec.Config, spec.Command, spec.Args)
	if len(args) == 0 {
		return nil, fmt.Errorf("container %s: no command: image %s has no ENTRYPOINT or CMD and none is given: %w", id, ref, errdefs.ErrInvalidArgument)
	}

	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[LabelPodUID] = spec.PodUID
	labels[LabelPodName] = spec.PodName
	labels[LabelPodNamespace] = spec.PodNamespace
	labels[LabelContainerName] = spec.ContainerName
	labels[LabelRestartCount] = strconv.Itoa(spec.RestartCount)
	if spec.LogPath != "" {
		labels[LabelLogPath] = spec.LogPath
	}

	specOpts, err := r.specOpts(id, image, args, &spec)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	ctr, err := r.client.NewContainer(ctx, id,
		containerd.WithImage(image),
		containerd.WithImageStopSignal(image, "SIGTERM"),
		containerd.WithSnapshotter(r.opts.Snapshotter),
		containerd.WithNewSnapshot(id, image),
		containerd.WithRuntime(runcRuntime, &runcoptions.Options{Root: r.runcRoot}),
		containerd.WithNewSpec(specOpts...),
		containerd.WithAdditionalContainerLabels(labels),
	)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, classify(err))
	}
	// From here on, undo everything on failure.
	cleanup := func() {
		cctx, cancel := context.WithTimeout(r.ctx(context.WithoutCancel(ctx)), 10*time.Second)
		defer cancel()
		_ = deleteTask(cctx, ctr)
		if err := ctr.Delete(cctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("clean up failed container", "container", id, "err", err)
		}
	}

	ioc := cio.NullIO
	if spec.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
			cleanup()
			return nil, fmt.Errorf("container %s: log directory: %w", id, err)
		}
		ioc = cio.LogFile(spec.LogPath)
	}
	task, err := newTask(ctx, ctr, ioc)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("create task %s: %w", id, classifyStart(args[0], err))
	}
	// Wait before Start, so that a process exiting at once is not missed.
	w, err := r.watch(ctx, ctr, task)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("wait task %s: %w", id, classify(err))
	}
	if err := task.Start(ctx); err != nil {
		r.forget(id, w)
		cleanup()
		return nil, fmt.Errorf("start task %s: %w", id, classifyStart(args[0], err))
	}
	return &Container{ID: id, PID: task.Pid(), StartedAt: time.Now()}, nil
}

// verifyNonRoot applies runAsNonRoot as kubelet does: the container's
// user, runAsUser or else the image's USER, must be a number other than 0.
// An image without a USER runs as root; one whose USER is a name cannot be
// checked without its /etc/passwd, and is refused too.
func verifyNonRoot(sec Security, imageUser string) error {
	if !sec.RunAsNonRoot {
		return nil
	}
	if sec.RunAsUser != nil {
		if *sec.RunAsUser == 0 {
			return fmt.Errorf("%w: runAsUser 0 breaks the non-root policy", ErrRunAsRoot)
		}
		return nil
	}
	user, _, _ := strings.Cut(imageUser, ":")
	if user == "" {
		return fmt.Errorf("%w is set and the image will run as root (it has no USER)", ErrRunAsRoot)
	}
	uid, err := strconv.ParseInt(user, 10, 64)
	if err != nil {
		return fmt.Errorf("%w is set and the image's user %q is not numeric: it cannot be verified to be non-root (set runAsUser)", ErrRunAsRoot, user)
	}
	if uid == 0 {
		return fmt.Errorf("%w is set and the image will run as root (USER %s)", ErrRunAsRoot, imageUser)
	}
	return nil
}

// newTask creates ctr's task. A shared shim whose last container was just
// deleted shuts down while another container may be joining it (between the
// shim's start and its create call); containerd then reports the closed
// connection, and the next try starts a fresh shim.
func newTask(ctx context.Context, ctr containerd.Container, ioc cio.Creator) (containerd.Task, error) {
	for try := 1; ; try++ {
		task, err := ctr.NewTask(ctx, ioc)
		if err == nil || try == 3 || !shimGone(err) {
			return task, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(try) * 20 * time.Millisecond):
		}
	}
}

// deleteTask deletes ctr's task, if it has one, killing its process. When
// the containers of one shim are removed at once (a pod stopping), the shim
// exits as the last of them goes, and another's delete may still be talking
// to it; containerd then reports the closed connection, and asking again
// finds the task gone or removes what is left of it.
func deleteTask(ctx context.Context, ctr containerd.Container) error {
	for try := 1; ; try++ {
		task, err := ctr.Task(ctx, nil)
		if err == nil {
			_, err = task.Delete(ctx, containerd.WithProcessKill)
			if err != nil {
				err = fmt.Errorf("delete task: %w", err)
			}
		} else {
			err = fmt.Errorf("task: %w", err)
		}
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if try == 3 || !shimGone(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(try) * 20 * time.Millisecond):
		}
	}
}

// shimGone reports whether err says the shim went away under the call.
func shimGone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "ttrpc: closed") || strings.Contains(s, "failed to start shim") || isConnErr(err)
}

// shimGroupAnnotation is the OCI annotation by which the runc v2 shim serves
// several containers from one shim process.
const shimGroupAnnotation = "io.containerd.runc.v2.group"

// shimGroups is how many shims the containers of one Runtime share.
const shimGroups = 8

// shimGroup names the shim a pod's containers run under: all containers of a
// pod share one, and pods are spread over shimGroups shims by their UID.
func shimGroup(podUID string) string {
	sum := sha256.Sum256([]byte(podUID))
	return fmt.Sprintf("keelson-shim-%d", int(sum[0])%shimGroups)
}

// processArgs applies Kubernetes' rules: Command replaces ENTRYPOINT, Args replaces CMD,
// and a Command without Args ignores CMD.
func processArgs(cfg ocispec.ImageConfig, command, args []string) []string {
	var out []string
	switch {
	case len(command) > 0:
		out = append(out, command...)
		out = append(out, args...)
	case len(args) > 0:
		out = append(out, cfg.Entrypoint...)
		out = append(out, args...)
	default:
		out = append(out, cfg.Entrypoint...)
		out = append(out, cfg.Cmd...)
	}
	return out
}

func (r *Runtime) specOpts(id string, image containerd.Image, args []string, s *ContainerSpec) ([]oci.SpecOpts, error) {
	opts := []oci.SpecOpts{
		oci.WithImageConfig(image),
		oci.WithProcessArgs(args...),
		oci.WithAnnotations(map[string]string{shimGroupAnnotation: shimGroup(s.PodUID)}),
	}
	if s.Hostname != "" {
		opts = append(opts, oci.WithHostname(s.Hostname), oci.WithEnv([]string{"HOSTNAME=" + s.Hostname}))
	}
	if len(s.Env) > 0 {
		opts = append(opts, oci.WithEnv(s.Env))
	}
	if s.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(s.WorkingDir))
	}
	if s.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if s.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.NetNSPath}))
	} else {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
		if s.Hostname == "" {
			// On the host's network without a hostname of its own, as
			// kubelet runs such pods: the node's UTS namespace and name.
			opts = append(opts, oci.WithHostNamespace(specs.UTSNamespace))
			if h, err := os.Hostname(); err == nil {
				opts = append(opts, oci.WithEnv([]string{"HOSTNAME=" + h}))
			}
		}
	}

	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == "" || !path.IsAbs(m.Destination) {
			return nil, fmt.Errorf("mount %q: destination must be an absolute path: %w", m.Destination, errdefs.ErrInvalidArgument)
		}
		switch m.Type {
		case "", "bind":
			o := []string{"rbind", "rprivate"}
			if m.ReadOnly {
				o = append(o, "ro")
			} else {
				o = append(o, "rw")
			}
			mounts = append(mounts, specs.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, Options: append(o, m.Options...)})
		case "tmpfs":
			o := []string{"nosuid", "nodev", "mode=1777"}
			if m.ReadOnly {
				o = append(o, "ro")
			}
			mounts = append(mounts, specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Destination, Options: append(o, m.Options...)})
		default:
			return nil, fmt.Errorf("mount %s: type %q: %w", m.Destination, m.Type, errdefs.ErrInvalidArgument)
		}
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}

	res := s.Resources
	if res.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(res.MemoryLimit)))
	}
	if res.CPUQuota > 0 {
		period := res.CPUPeriod
		if period == 0 {
			period = 100000
		}
		opts = append(opts, oci.WithCPUCFS(res.CPUQuota, period))
	}
	if res.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(res.CPUShares))
	}

	sec := s.Security
	if sec.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices,
			oci.WithWriteableSysfs, oci.WithWriteableCgroupfs, withUnmaskedPaths)
	} else {
		if containsFold(sec.CapDrop, "ALL") {
			opts = append(opts, oci.WithCapabilities(nil))
		} else if drop := capNames(sec.CapDrop); len(drop) > 0 {
			opts = append(opts, oci.WithDroppedCapabilities(drop))
		}
		if add := capNames(sec.CapAdd); len(add) > 0 || containsFold(sec.CapAdd, "ALL") {
			if containsFold(sec.CapAdd, "ALL") {
				all, err := capability.Current()
				if err != nil {
					return nil, fmt.Errorf("capabilities: %w", err)
				}
				opts = append(opts, oci.WithCapabilities(all))
			} else {
				opts = append(opts, oci.WithAddedCapabilities(add))
			}
		}
	}
	switch {
	case sec.RunAsUser != nil && sec.RunAsGroup != nil:
		opts = append(opts, oci.WithUIDGID(uint32(*sec.RunAsUser), uint32(*sec.RunAsGroup)))
	case sec.RunAsUser != nil:
		opts = append(opts, oci.WithUserID(uint32(*sec.RunAsUser)))
	case sec.RunAsGroup != nil:
		opts = append(opts, withGID(uint32(*sec.RunAsGroup)))
	}
	if len(sec.SupplementalGroups) > 0 {
		opts = append(opts, withAdditionalGroups(sec.SupplementalGroups))
	}
	if sec.ReadOnlyRootFS {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if sec.AllowPrivilegeEscalation != nil && !*sec.AllowPrivilegeEscalation && !sec.Privileged {
		opts = append(opts, oci.WithNoNewPrivileges)
	}

	parent := s.CgroupParent
	if parent == "" {
		parent = r.cgroupParent()
	}
	opts = append(opts, oci.WithCgroup(path.Join(parent, id)))
	return opts, nil
}

func withUnmaskedPaths(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Linux != nil {
		s.Linux.MaskedPaths = nil
		s.Linux.ReadonlyPaths = nil
	}
	return nil
}

func withGID(gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.User.GID = gid
		return nil
	}
}

// withAdditionalGroups adds groups to the process's additional ones, each
// once.
func withAdditionalGroups(gids []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		for _, g := range gids {
			if !slices.Contains(s.Process.User.AdditionalGids, uint32(g)) {
				s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
			}
		}
		return nil
	}
}

// capNames turns Kubernetes capability names into OCI ones (CAP_ prefix), dropping "ALL".
func capNames(in []string) []string {
	var out []string
	for _, c := range in {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "" || c == "ALL" {
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(strings.TrimSpace(v), s) {
			return true
		}
	}
	return false
}

// classifyStart recognizes a command missing from the image in runc's error.
func classifyStart(cmd string, err error) error {
	s := err.Error()
	if strings.Contains(s, "executable file not found") ||
		(strings.Contains(s, "exec:") && strings.Contains(s, "no such file or directory")) {
		return fmt.Errorf("command %q: %w: %w", cmd, ErrCommandNotFound, err)
	}
	return classify(err)
}

// Stop stops the container's process: the image's stop signal (SIGTERM by default), then
// SIGKILL if it has not exited after grace. A container without a running task is
// already stopped (nil).
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("stop container %s: %w", id, classify(err))
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("stop container %s: %w", id, classify(err))
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, classify(err))
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	sig, err := containerd.GetStopSignal(ctx, ctr, syscall.SIGTERM)
	if err != nil {
		sig = syscall.SIGTERM
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	exitC, err := task.Wait(waitCtx)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, classify(err))
	}
	if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: signal %v: %w", id, sig, classify(err))
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exitC:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", id, ctx.Err())
	case <-timer.C:
	}
	r.log.Info("container did not stop within its grace period; killing it", "container", id, "grace", grace)
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: SIGKILL: %w", id, classify(err))
	}
	select {
	case <-exitC:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", id, ctx.Err())
	}
}

// Remove deletes the container's task (killing it if it still runs), the container and
// its snapshot. Removing a container that does not exist is not an error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	defer r.forget(id, nil)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("remove container %s: %w", id, classify(err))
	}
	if err := deleteTask(ctx, ctr); err != nil {
		return fmt.Errorf("remove container %s: %w", id, classify(err))
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, classify(err))
	}
	return nil
}

// State is a container's task state.
type State string

// States reported by List.
const (
	StateCreated State = "Created" // container without a task, or task not started
	StateRunning State = "Running"
	StateExited  State = "Exited"
	StateUnknown State = "Unknown"
)

// Info describes a container, as List reports it.
type Info struct {
	ID        string
	Labels    map[string]string
	Image     string
	CreatedAt time.Time
	State     State
	PID       uint32
	ExitCode  int
	ExitedAt  time.Time
}

// PodUID, PodName, PodNamespace, ContainerName, RestartCount and LogPath read the labels
// Start set.
func (i Info) PodUID() string        { return i.Labels[LabelPodUID] }
func (i Info) PodName() string       { return i.Labels[LabelPodName] }
func (i Info) PodNamespace() string  { return i.Labels[LabelPodNamespace] }
func (i Info) ContainerName() string { return i.Labels[LabelContainerName] }
func (i Info) LogPath() string       { return i.Labels[LabelLogPath] }
func (i Info) RestartCount() int {
	n, _ := strconv.Atoi(i.Labels[LabelRestartCount])
	return n
}

// List reports every container in the namespace with its labels and task state.
func (r *Runtime) List(ctx context.Context) ([]Info, error) {
	ctx = r.ctx(ctx)
	ctrs, err := r.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", classify(err))
	}
	out := make([]Info, 0, len(ctrs))
	for _, c := range ctrs {
		info, err := r.info(ctx, c)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue // removed meanwhile
			}
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Inspect reports one container.
func (r *Runtime) Inspect(ctx context.Context, id string) (Info, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return Info{}, fmt.Errorf("container %s: %w", id, classify(err))
	}
	return r.info(ctx, c)
}

func (r *Runtime) info(ctx context.Context, c containerd.Container) (Info, error) {
	ci, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return Info{}, fmt.Errorf("container %s: %w", c.ID(), classify(err))
	}
	info := Info{ID: ci.ID, Labels: ci.Labels, Image: ci.Image, CreatedAt: ci.CreatedAt, State: StateCreated}
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return info, nil
		}
		info.State = StateUnknown
		return info, nil
	}
	info.PID = task.Pid()
	st, err := task.Status(ctx)
	if err != nil {
		info.State = StateUnknown
		return info, nil
	}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		info.State = StateRunning
	case containerd.Created:
		info.State = StateCreated
	case containerd.Stopped:
		info.State = StateExited
		info.ExitCode = int(st.ExitStatus)
		info.ExitedAt = st.ExitTime
	default:
		info.State = StateUnknown
	}
	return info, nil
}

// errNotFound wraps ErrNotFound around a not-found error for id.
func errNotFound(what, id string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s %s: %w", what, id, err)
	}
	return fmt.Errorf("%s %s: %w: %w", what, id, ErrNotFound, err)
}
