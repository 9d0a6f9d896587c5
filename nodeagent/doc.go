// Package nodeagent runs the pods bound to one node as real containers.
//
// The Agent takes the desired pods from a PodSource (a directory of static
// Pod manifests now; the controller's API later), and keeps one worker per
// pod. A worker owns everything of its pod: the network sandbox (a network
// namespace wired by CNI, see package network), the containerd containers
// (see package runtime), their restart back-off, their probers, and the
// pod's status. It reacts to four things only: a new spec, a container
// exit, a probe result, and the end of a back-off; each reaction is one sync
// that compares the spec with what runs and acts on the difference.
//
// Init containers run in order, each to completion, before the app
// containers; sidecars (init containers with restartPolicy Always) start
// in that order and keep running. Each container run gets a prober
// goroutine that runs its postStart hook and then its liveness, readiness
// and startup probes and sends the results to the worker, which counts them
// against the thresholds (probeState, a pure value) and acts: a failed
// liveness or startup probe kills the run (preStop hook, SIGTERM, SIGKILL
// after the grace period) and the restart back-off applies; readiness
// drives the containers' Ready and the pod's Ready condition. Stopping a
// pod runs the preStop hooks, then stops the app containers and after them
// the sidecars, all within the grace period.
//
// Containers outlive the agent: their logs go straight to files from the
// containerd shim, and their labels carry the pod UID, name, namespace,
// container name and restart count. A starting agent lists them and adopts
// those whose pod is still desired (nothing is restarted and no IP
// changes); the others, and sandboxes of pods removed while it was down,
// are cleaned up.
//
// The agent publishes pod status and events into a store.Store, which an
// apiserver serves in the same shape as the controller's API. A pod is
// written only when it changed: each write goes to the controller, whose
// write wakes the agent's follow of its pods.
package nodeagent
