// Package runtime runs a node's containers on the real containerd (1.6 or later, with
// runc), through the containerd v1.7 Go client.
//
// Its job, for the node agent: start and supervise a private containerd (StartDaemon),
// bring images onto the node (ImportArchive, ImportDir for <data-dir>/images, EnsureImage
// with Kubernetes pull policies and registry credentials), and run, watch, stop, list and
// remove the containers of pods (Start, Wait, Stop, Remove, List, Exec, Stats), with their
// logs written by containerd's shim straight to files (RotateLog rotates them).
//
// Invariants:
//
//   - containerd is the only record of what runs. Every container Start creates carries
//     labels (LabelPodUID, LabelPodName, LabelPodNamespace, LabelContainerName,
//     LabelRestartCount, LabelLogPath) so that an agent that restarted finds its containers
//     with List and adopts them; the Runtime itself keeps no state that matters across
//     restarts (only caches of exit watchers and OOM events).
//   - Containers outlive the agent and containerd: shims keep running and keep appending to
//     the log files; a restarted containerd reconnects to them, and Wait re-subscribes.
//   - One container per start: the ID is podUID-name-restartCount (ContainerID), with its
//     own snapshot; Remove deletes task, container and snapshot and is idempotent.
//   - Shims are shared: a container's spec carries the runc v2 shim's group annotation
//     (shimGroup), which puts all containers of a pod, and the pods spread by UID over
//     shimGroups groups, under one shim each. A start that joins a shim as it exits on its
//     last container is tried again on a new one (newTask), and so is a task delete that
//     the shim's exit cut off (deleteTask). A shim still serving a stopped containerd that
//     has no container left (its last one went as containerd stopped) is stopped by
//     Daemon.Stop (stopIdleShims).
//   - runAsNonRoot is checked before anything is created (verifyNonRoot): the container's
//     user, or else the image's USER, must be a number other than 0 (ErrRunAsRoot).
//   - The caller owns the pod: its network namespace, volumes and log directory are made
//     before Start and removed after Remove by the caller.
//   - Containers go under one parent cgroup per containerd and namespace (cgroupParent),
//     which runc makes and leaves; Close removes it where it is empty.
//   - Errors name the container or image and wrap a kind: ErrUnavailable (containerd not
//     reachable; retry), ErrNotFound, ErrCommandNotFound, ErrRunAsRoot, ErrImageNeverPull,
//     ErrImageNotFound, ErrRegistryUnavailable, ErrRegistryUnauthorized, or a containerd
//     errdefs kind.
//
// Concurrency: a Daemon and a Runtime are safe for concurrent use. A Runtime owns its
// goroutines (an OOM event subscriber and one exit watcher per waited container, which
// tells every OnExit and Wait of that container); Close stops them and waits. Operations on one container should be serialized by the caller
// (the agent's per-pod worker).
package runtime
