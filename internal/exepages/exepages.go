// Package exepages gives back the pages of the running executable that
// start-up touched and the process does not use again.
//
// Keelson is one 50 MB executable. Starting it runs the package
// initialisers of everything linked in (protobuf descriptor registration,
// Kubernetes schemes, kustomize, flag parsing), and the kernel maps code in
// 64 KB around each fault, so a fresh agent has about 27 MB of the
// executable resident although its steady work uses about 3 MB of it. Those
// pages are clean and file-backed: the kernel would drop them under memory
// pressure anyway, and this drops them at once.
//
// Release advises the kernel (madvise MADV_DONTNEED) that the read-only
// mappings of the executable, its code and read-only data, are not needed.
// Their page table entries go; the page cache keeps the file, and a page the
// process touches again is mapped again from it, with no disk read. The
// writable mapping (Go's data and bss) is never touched: a private page the
// process wrote would lose what it wrote.
package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Release drops the resident read-only pages of the running executable and
// returns how many bytes of resident file-backed memory the process gave
// back. It is safe to call at any time, and more than once.
func Release() (int64, error) {
	var exe syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("release executable pages: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("release executable pages: %w", err)
	}
	ranges, err := readOnlyRanges(maps, exe.Dev, exe.Ino)
	if err != nil {
		return 0, fmt.Errorf("release executable pages: %w", err)
	}
	before := rssFile()
	for _, r := range ranges {
		// The range is the executable's mapping, not Go memory: madvise it
		// by address rather than through a slice of it.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			return 0, fmt.Errorf("release executable pages %#x-%#x: %w", r.start, r.end, errno)
		}
	}
	return before - rssFile(), nil
}

type addrRange struct{ start, end uintptr }

// readOnlyRanges returns the mappings in a /proc/PID/maps text that map the
// file dev:ino privately and without write permission.
func readOnlyRanges(maps []byte, dev, ino uint64) ([]addrRange, error) {
	var out []addrRange
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// 00400000-0150c000 r-xp 00000000 fe:01 1234  /path/to/exe
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			return nil, fmt.Errorf("maps line %q: too few fields", sc.Text())
		}
		perms := f[1]
		if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		major, minor, ok := strings.Cut(f[3], ":")
		if !ok {
			return nil, fmt.Errorf("maps line %q: device %q", sc.Text(), f[3])
		}
		maj, err1 := strconv.ParseUint(major, 16, 32)
		mnr, err2 := strconv.ParseUint(minor, 16, 32)
		inode, err3 := strconv.ParseUint(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("maps line %q: device or inode", sc.Text())
		}
		if inode != ino || unix.Mkdev(uint32(maj), uint32(mnr)) != dev {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("maps line %q: address range", sc.Text())
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}

// rssFile is the process's resident file-backed memory in bytes, or 0 when
// /proc does not say.
func rssFile() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
