package nodeagent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// LogOptions select what Logs prints.
type LogOptions struct {
	Container string
	Previous  bool
	// Tail is the number of last lines; negative means all.
	Tail   int
	Follow bool
}

// ErrNoLogs is returned when the container has no log (yet, or no
// previous run).
var ErrNoLogs = errors.New("no logs")

// Logs writes a container's log to w. With Follow it keeps writing what the
// container prints until ctx ends.
func (a *Agent) Logs(ctx context.Context, pod *corev1.Pod, o LogOptions, w io.Writer) error {
	name := o.Container
	if name == "" {
		if len(pod.Spec.Containers) != 1 {
			var names []string
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return fmt.Errorf("pod %s/%s has %d containers: choose one of %s with -c", pod.Namespace, pod.Name, len(names), strings.Join(names, ", "))
		}
		name = pod.Spec.Containers[0].Name
	}
	dir := filepath.Join(a.podDir(pod), "logs", name)
	runs, err := logRuns(dir)
	if err != nil || len(runs) == 0 {
		return fmt.Errorf("container %s of pod %s/%s: %w", name, pod.Namespace, pod.Name, ErrNoLogs)
	}
	run := runs[len(runs)-1]
	if o.Previous {
		if len(runs) < 2 {
			return fmt.Errorf("container %s of pod %s/%s has no previous run: %w", name, pod.Namespace, pod.Name, ErrNoLogs)
		}
		run = runs[len(runs)-2]
	}
	path := filepath.Join(dir, strconv.Itoa(run)+".log")
	offset, err := writeTail(path, o.Tail, a.logRotation.maxFiles, w)
	if err != nil {
		return err
	}
	if !o.Follow || o.Previous {
		return nil
	}
	return follow(ctx, path, offset, w)
}

// logRuns lists the restart numbers that have a log file, in order.
func logRuns(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var runs []int
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(n); err == nil {
			runs = append(runs, i)
		}
	}
	sort.Ints(runs)
	return runs, nil
}

// writeTail writes the last n lines of path (and of its rotated files when
// needed, up to maxFiles of them; all when n < 0) and returns the size of
// path it has read.
func writeTail(path string, n, maxFiles int, w io.Writer) (int64, error) {
	var chunks [][]byte
	lines := 0
	for i := 0; i < maxFiles; i++ {
		p := path
		if i > 0 {
			p = path + "." + strconv.Itoa(i)
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			if i == 0 {
				return 0, nil
			}
			break
		}
		if err != nil {
			return 0, err
		}
		chunks = append(chunks, data)
		lines += bytes.Count(data, []byte{'\n'})
		if n >= 0 && lines >= n {
			break
		}
	}
	var all []byte
	for i := len(chunks) - 1; i >= 0; i-- {
		all = append(all, chunks[i]...)
	}
	if n >= 0 {
		all = lastLines(all, n)
	}
	if _, err := w.Write(all); err != nil {
		return 0, err
	}
	if len(chunks) == 0 {
		return 0, nil
	}
	return int64(len(chunks[0])), nil
}

func lastLines(data []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}

// follow copies what is appended to path from offset on, until ctx ends.
// A file that shrinks was rotated (copied and truncated): reading starts
// again at its beginning.
func follow(ctx context.Context, path string, offset int64, w io.Writer) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	flusher, _ := w.(interface{ Flush() })
	for {
		f, err := os.Open(path)
		if err == nil {
			st, serr := f.Stat()
			if serr == nil && st.Size() < offset {
				offset = 0
			}
			if serr == nil && st.Size() > offset {
				if _, err := f.Seek(offset, io.SeekStart); err == nil {
					n, err := io.Copy(w, bufio.NewReader(io.LimitReader(f, st.Size()-offset)))
					offset += n
					if err != nil {
						f.Close()
						return err
					}
					if flusher != nil {
						flusher.Flush()
					}
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
