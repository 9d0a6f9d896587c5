package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// DirFiles lists the files of a working directory for Load: every regular
// file and symlink under root except the .git directory, with Hash = the
// SHA-256 of the content. Symlinks are not followed: they are reported with
// Mode fs.ModeSymlink and their Target. Read reads the file again when the
// Loader needs its content.
//
// If root is a regular file, the result is that one file, named by its base
// name.
func DirFiles(root string) ([]File, error) {
	info, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("listing manifests: %w", err)
	}
	if info.Mode().IsRegular() {
		f, err := dirFile(root, filepath.Base(root), info)
		if err != nil {
			return nil, err
		}
		return []File{f}, nil
	}
	var files []File
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("listing manifests: %w", err)
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("listing manifests: %w", err)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("listing manifests: %w", err)
		}
		f, err := dirFile(p, filepath.ToSlash(rel), info)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

func dirFile(abs, rel string, info fs.FileInfo) (File, error) {
	f := File{Path: rel, Size: info.Size()}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return File{}, fmt.Errorf("reading symlink %s: %w", rel, err)
		}
		f.Mode = fs.ModeSymlink
		f.Target = filepath.ToSlash(target)
		sum := sha256.Sum256([]byte(target))
		f.Hash = "link:" + hex.EncodeToString(sum[:])
		f.Size = 0
		f.Read = func() ([]byte, error) { return nil, fmt.Errorf("%s is a symlink", rel) }
		return f, nil
	case !info.Mode().IsRegular():
		f.Mode = info.Mode().Type()
		f.Read = func() ([]byte, error) { return nil, fmt.Errorf("%s is not a regular file", rel) }
		return f, nil
	}
	fh, err := os.Open(abs)
	if err != nil {
		return File{}, fmt.Errorf("reading %s: %w", rel, err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return File{}, fmt.Errorf("reading %s: %w", rel, err)
	}
	f.Hash = hex.EncodeToString(h.Sum(nil))
	f.Read = func() ([]byte, error) {
		data, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", rel, err)
		}
		return data, nil
	}
	return f, nil
}
