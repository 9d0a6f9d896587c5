package runtime

import (
	"fmt"
	"io"
	"os"
	"strconv"
)

// RotateLog rotates the container log at path when it has reached maxBytes, keeping keep
// old files (path.1 is the newest). It copies and then truncates (copytruncate), because
// containerd's shim keeps path open with O_APPEND: after the truncation the shim's next
// write lands at the start of the now empty file. Lines written between the copy and the
// truncation are lost; this is the usual price of copytruncate. It reports whether it
// rotated. Callers serialize calls for one path.
func RotateLog(path string, maxBytes int64, keep int) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	if fi.Size() < maxBytes {
		return false, nil
	}
	if keep < 1 {
		if err := os.Truncate(path, 0); err != nil {
			return false, fmt.Errorf("rotate log %s: %w", path, err)
		}
		return true, nil
	}
	_ = os.Remove(path + "." + strconv.Itoa(keep))
	for i := keep - 1; i >= 1; i-- {
		from := path + "." + strconv.Itoa(i)
		if err := os.Rename(from, path+"."+strconv.Itoa(i+1)); err != nil && !os.IsNotExist(err) {
			return false, fmt.Errorf("rotate log %s: %w", path, err)
		}
	}
	if err := copyTruncate(path, path+".1"); err != nil {
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	return true, nil
}

func copyTruncate(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return err
	}
	return in.Truncate(0)
}
