package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// CheckKernel reports everything the load balancer needs that this machine
// lacks, each error wrapping ErrNotSupported and saying what is missing:
// the bpf filesystem, a cgroup v2 mount, the program types, attach types and
// helpers the programs use, bpf_link for cgroups, and TCX (Linux 6.6). It
// loads the programs once (with tiny maps, nothing pinned or attached), so
// the verifier of this kernel has accepted them when it returns nil. BTF is
// not needed: the programs use no CO-RE. It needs the privileges Open needs.
func CheckKernel(cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	var errs []error
	missing := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrNotSupported)...))
	}

	if err := checkBPFFS(cfg.PinRoot); err != nil {
		errs = append(errs, err)
	}
	if path, err := cgroupPath(cfg.CgroupPath); err != nil {
		errs = append(errs, err)
	} else if err := isCgroup2(path); err != nil {
		errs = append(errs, err)
	}

	for _, pt := range []ebpf.ProgramType{ebpf.CGroupSockAddr, ebpf.SchedCLS} {
		if err := features.HaveProgramType(pt); err != nil {
			missing("program type %s: %v", pt, err)
		}
	}
	for _, h := range []struct {
		pt ebpf.ProgramType
		fn asm.BuiltinFunc
		// why names what needs it
		why string
	}{
		{ebpf.CGroupSockAddr, asm.FnGetSocketCookie, "UDP backends per socket, reply translation"},
		{ebpf.CGroupSockAddr, asm.FnGetNetnsCookie, "session affinity of sockets (Linux 5.7)"},
		{ebpf.CGroupSockAddr, asm.FnSetRetval, "refusing with ECONNREFUSED (Linux 5.18)"},
		{ebpf.SchedCLS, asm.FnFibLookup, "forwarding SNATed NodePort traffic"},
		{ebpf.SchedCLS, asm.FnRedirectNeigh, "forwarding SNATed NodePort traffic (Linux 5.10)"},
		{ebpf.SchedCLS, asm.FnKtimeGetCoarseNs, "connection tracking (Linux 5.11)"},
	} {
		if err := features.HaveProgramHelper(h.pt, h.fn); err != nil {
			missing("helper %s for %s programs, needed for %s: %v", h.fn, h.pt, h.why, err)
		}
	}

	spec, err := newSpec()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
		m.MaxEntries = 1
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		missing("loading the programs: %v", err)
	} else {
		coll.Close()
	}
	if err := haveTCX(); err != nil {
		missing("TCX attachment (Linux 6.6): %v", err)
	}
	return errors.Join(errs...)
}

// newSpec parses the embedded object. The spec is deterministic and may be
// changed by its caller (each call parses anew).
func newSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("parse the BPF object: %w", err)
	}
	return spec, nil
}

// haveTCX probes TCX by attaching a program to an interface that does not
// exist: a kernel with TCX says ENODEV.
func haveTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return nil
	}
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

const (
	bpffsMagic   = 0xcafe4a11
	cgroup2Magic = 0x63677270
)

// checkBPFFS says whether pins can live under root: it is on a bpf
// filesystem, or below /sys/fs/bpf where Open can mount one.
func checkBPFFS(root string) error {
	if onBPFFS(root) {
		return nil
	}
	if !fsSupported("bpf") {
		return fmt.Errorf("bpf filesystem: the kernel lacks it (no \"bpf\" in /proc/filesystems): %w", ErrNotSupported)
	}
	if !underDir(root, bpffsMount) {
		return fmt.Errorf("bpf filesystem: pin root %s is not on one, and only %s is mounted automatically: %w", root, bpffsMount, ErrNotSupported)
	}
	return nil
}

// ensureBPFFS mounts bpffs at /sys/fs/bpf when root is below it and no bpf
// filesystem is there yet. A lock on the mount point makes concurrent
// callers (tests, agents of several nodes) mount it once.
func ensureBPFFS(root string) error {
	if onBPFFS(root) {
		return nil
	}
	if err := checkBPFFS(root); err != nil {
		return err
	}
	if err := os.MkdirAll(bpffsMount, 0o755); err != nil {
		return fmt.Errorf("bpf filesystem: %w", err)
	}
	dir, err := os.Open(bpffsMount)
	if err != nil {
		return fmt.Errorf("bpf filesystem: %w", err)
	}
	defer dir.Close()
	// A caller that opened the directory before the mount holds the
	// underlying one and waits here; one that opens it after the mount
	// sees bpffs below.
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("bpf filesystem: lock %s: %w", bpffsMount, err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN) //nolint:errcheck // closing unlocks too
	if isFS(bpffsMount, bpffsMagic) {
		return nil
	}
	if err := unix.Mount("bpf", bpffsMount, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("bpf filesystem: mount -t bpf bpf %s: %w", bpffsMount, err)
	}
	if !onBPFFS(root) {
		return fmt.Errorf("bpf filesystem: %s is still not on bpffs after mounting %s: %w", root, bpffsMount, ErrNotSupported)
	}
	return nil
}

// onBPFFS reports whether path, or its nearest existing parent, is on a bpf
// filesystem.
func onBPFFS(path string) bool {
	for p := path; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			return isFS(p, bpffsMagic)
		}
		if p == "/" {
			return false
		}
	}
}

func isFS(path string, magic int64) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return int64(st.Type) == magic
}

func underDir(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func fsSupported(name string) bool {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == name {
			return true
		}
	}
	return false
}

// cgroupPath returns configured, or the first cgroup v2 mount in
// /proc/mounts (/sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on
// pure v2 ones).
func cgroupPath(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", fmt.Errorf("cgroup v2: %w", err)
	}
	defer f.Close()
	path, ok := findCgroup2(f)
	if !ok {
		return "", fmt.Errorf("cgroup v2: no cgroup2 filesystem in /proc/mounts: %w", ErrNotSupported)
	}
	return path, nil
}

// findCgroup2 returns the first cgroup2 mount point of a mounts table.
func findCgroup2(mounts io.Reader) (string, bool) {
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return unescapeMount(fields[1]), true
		}
	}
	return "", false
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}

func isCgroup2(path string) error {
	if !isFS(path, cgroup2Magic) {
		return fmt.Errorf("cgroup v2: %s is not a cgroup2 mount or directory: %w", path, ErrNotSupported)
	}
	return nil
}

// cgroupID is the ID of a cgroup v2 directory: its inode number.
func cgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// CheckSteering reports everything socket steering needs that this machine
// lacks, each error wrapping ErrNotSupported (or ErrInvalid for a bad
// config): the bpf filesystem, sk_lookup programs (Linux 5.9) with
// bpf_sk_assign, socket hash maps, and the network namespace to attach to.
// It loads the program once (with tiny maps, nothing pinned or attached),
// so the verifier of this kernel has accepted it when it returns nil. It
// needs the privileges OpenSteering needs.
func CheckSteering(cfg SteerConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	var errs []error
	missing := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrNotSupported)...))
	}
	if err := checkBPFFS(cfg.PinRoot); err != nil {
		errs = append(errs, err)
	}
	if f, _, err := openNetNS(cfg.NetNS); err != nil {
		errs = append(errs, err)
	} else {
		f.Close()
	}
	if err := features.HaveProgramType(ebpf.SkLookup); err != nil {
		missing("program type %s (Linux 5.9): %v", ebpf.SkLookup, err)
	}
	if err := features.HaveMapType(ebpf.SockHash); err != nil {
		missing("map type %s: %v", ebpf.SockHash, err)
	}
	if err := features.HaveProgramHelper(ebpf.SkLookup, asm.FnSkAssign); err != nil {
		missing("helper %s for %s programs: %v", asm.FnSkAssign, ebpf.SkLookup, err)
	}
	spec, err := loadSteer()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("parse the BPF object: %w", err))...)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
		m.MaxEntries = 1
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		missing("loading the steering program: %v", err)
	} else {
		coll.Close()
	}
	return errors.Join(errs...)
}
