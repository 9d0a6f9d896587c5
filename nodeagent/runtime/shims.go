package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// shimSocketDir is where containerd's runc v2 shims (1.6) listen.
const shimSocketDir = "/run/containerd/s/"

// stopIdleShims stops the shims that still serve the containerd of socket
// once that containerd has no containers left, and removes their sockets. A
// shim goes when containerd tells it its last container is deleted; one
// whose last container went as containerd stopped never hears it, and would
// otherwise wait for good. It returns the PIDs it stopped.
func stopIdleShims(socket string) []int {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var stopped []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !isShimOf(cmdline, socket) {
			continue
		}
		sockets := listeningSockets(pid)
		if syscall.Kill(pid, syscall.SIGKILL) != nil {
			continue
		}
		stopped = append(stopped, pid)
		for _, s := range sockets {
			if strings.HasPrefix(s, shimSocketDir) {
				_ = os.Remove(s)
			}
		}
	}
	return stopped
}

// isShimOf reports whether a /proc/PID/cmdline is a containerd shim's
// serving the containerd at socket (its -address).
func isShimOf(cmdline []byte, socket string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
		return false
	}
	for i, a := range args[:len(args)-1] {
		if a == "-address" || a == "--address" {
			return args[i+1] == socket
		}
	}
	return false
}

// listeningSockets returns the paths of the Unix sockets process pid has open.
func listeningSockets(pid int) []string {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	table, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil
	}
	return unixSocketPaths(table, inodes)
}

// unixSocketPaths picks from a /proc/net/unix table the paths of the sockets
// with the given inodes.
func unixSocketPaths(table []byte, inodes map[string]bool) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(table))
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(sc.Text())
		if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], "/") {
			out = append(out, f[7])
		}
	}
	return out
}
