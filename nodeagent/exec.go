package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/nodeagent/runtime"
)

// ErrNotRunning is returned by Exec when the container is not running.
var ErrNotRunning = errors.New("container is not running")

// Exec runs cmd in a running container of pod, with stdin (may be nil),
// stdout and stderr (stderr unused with a TTY), and returns its exit code.
func (a *Agent) Exec(ctx context.Context, pod *corev1.Pod, container string, cmd []string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if container == "" {
		if len(pod.Spec.Containers) != 1 {
			var names []string
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return -1, fmt.Errorf("pod %s/%s has %d containers: choose one of %s with -c", pod.Namespace, pod.Name, len(names), strings.Join(names, ", "))
		}
		container = pod.Spec.Containers[0].Name
	}
	infos, err := a.rt.List(ctx)
	if err != nil {
		return -1, err
	}
	for _, in := range infos {
		if in.PodUID() == string(pod.UID) && in.ContainerName() == container && in.State == runtime.StateRunning {
			return a.rt.Exec(ctx, in.ID, cmd, tty, stdin, stdout, stderr)
		}
	}
	return -1, fmt.Errorf("container %s of pod %s/%s: %w", container, pod.Namespace, pod.Name, ErrNotRunning)
}
