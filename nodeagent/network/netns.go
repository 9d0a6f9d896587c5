package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// createNetNS creates a new network namespace and bind-mounts it on path, which
// must not exist. The namespace is created on a dedicated, locked OS thread; the
// thread is returned to the Go runtime only if it could be moved back to its
// original namespace, otherwise it stays locked and the runtime discards it when
// the goroutine ends.
func createNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if mountErr != nil {
			mountErr = fmt.Errorf("bind-mount network namespace on %s: %w", path, mountErr)
		} else {
			// lo comes up here, in the thread that is already inside the new
			// namespace: what the CNI loopback plugin does, without starting
			// a plugin process for every pod.
			mountErr = loopbackUp()
		}
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it is in the wrong namespace and must die with this goroutine.
			errc <- errors.Join(mountErr, fmt.Errorf("restore network namespace of thread: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- mountErr
	}()
	if err := <-errc; err != nil {
		_ = removeNetNS(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and removes a network namespace file. A missing file or
// a file that is not mounted is not an error.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace %s: %w", path, err)
	}
	return nil
}

// isNetNS reports whether path is a mounted network namespace (nsfs).
func isNetNS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// loopbackUp brings up lo in the calling thread's network namespace.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}
