package ebpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Pins in the node's directory, besides the maps (pinned by their names):
//
//	prog_<program>            the program the links below run
//	link_cgroup_<hook>        connect4, sendmsg4, recvmsg4, getpeername4
//	link_tcx_<dir>_<ifname>   dir is ingress or egress

const (
	progPinPrefix   = "prog_"
	linkPinPrefix   = "link_"
	tcxLinkPrefix   = "link_tcx_"
	cgroupPinPrefix = "link_cgroup_"
)

func isLinkPin(name string) bool { return strings.HasPrefix(name, linkPinPrefix) }

// hook is one attachment of a program.
type hook struct {
	pin     string // the link's pin file name
	prog    string // the program's name in the object
	attach  ebpf.AttachType
	ifname  string // TCX hooks
	ifindex int
}

// attach makes every hook of the config attached to the program of this
// object, reusing pinned links, and detaches the TCX hooks of interfaces no
// longer configured.
func (lb *LB) attach() error {
	cgID, err := cgroupID(lb.cgroup)
	if err != nil {
		return err
	}
	hooks := []hook{
		{pin: cgroupPinPrefix + "connect4", prog: lbProgLb4Connect4, attach: ebpf.AttachCGroupInet4Connect},
		{pin: cgroupPinPrefix + "sendmsg4", prog: lbProgLb4Sendmsg4, attach: ebpf.AttachCGroupUDP4Sendmsg},
		{pin: cgroupPinPrefix + "recvmsg4", prog: lbProgLb4Recvmsg4, attach: ebpf.AttachCGroupUDP4Recvmsg},
		{pin: cgroupPinPrefix + "getpeername4", prog: lbProgLb4Getpeername4, attach: ebpf.AttachCgroupInet4GetPeername},
	}
	wantTCX := map[string]bool{}
	for _, name := range lb.cfg.ExternalInterfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("external interface %s: %w", name, err)
		}
		if len(ifc.HardwareAddr) != 6 {
			return fmt.Errorf("external interface %s: not an Ethernet device: %w", name, ErrNotSupported)
		}
		for _, h := range []hook{
			{pin: tcxLinkPrefix + "ingress_" + name, prog: lbProgLb4Ingress, attach: ebpf.AttachTCXIngress},
			{pin: tcxLinkPrefix + "egress_" + name, prog: lbProgLb4Egress, attach: ebpf.AttachTCXEgress},
		} {
			h.ifname, h.ifindex = name, ifc.Index
			wantTCX[h.pin] = true
			hooks = append(hooks, h)
		}
	}

	entries, err := os.ReadDir(lb.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tcxLinkPrefix) && !wantTCX[e.Name()] {
			if err := detachPinned(filepath.Join(lb.dir, e.Name())); err != nil {
				return err
			}
			lb.log.Info("detached from interface no longer external", "link", e.Name())
		}
	}

	progs := map[string]*ebpf.Program{
		lbProgLb4Connect4:     lb.objs.Lb4Connect4,
		lbProgLb4Sendmsg4:     lb.objs.Lb4Sendmsg4,
		lbProgLb4Recvmsg4:     lb.objs.Lb4Recvmsg4,
		lbProgLb4Getpeername4: lb.objs.Lb4Getpeername4,
		lbProgLb4Ingress:      lb.objs.Lb4Ingress,
		lbProgLb4Egress:       lb.objs.Lb4Egress,
	}
	names := make([]string, 0, len(progs))
	for name := range progs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		prog, err := lb.pinnedProgram(name, progs[name])
		if err != nil {
			return err
		}
		for _, h := range hooks {
			if h.prog != name {
				continue
			}
			if err := lb.attachHook(h, prog, cgID); err != nil {
				return err
			}
		}
	}
	return nil
}

// pinnedProgram returns the program the hooks of name should run: the pinned
// one if it is the same code using the same maps as fresh (fresh is then not
// needed), else fresh, which it pins in its place.
func (lb *LB) pinnedProgram(name string, fresh *ebpf.Program) (*ebpf.Program, error) {
	path := filepath.Join(lb.dir, progPinPrefix+name)
	old, err := ebpf.LoadPinnedProgram(path, nil)
	switch {
	case err == nil:
		same, err := sameProgram(old, fresh)
		if err != nil {
			old.Close()
			return nil, fmt.Errorf("program %s: %w", name, err)
		}
		if same {
			lb.replaceProgram(name, old)
			return old, nil
		}
		old.Close()
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("program %s: %w", name, err)
		}
		lb.log.Info("replacing program", "program", name)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("program %s: %w", name, err)
	}
	if err := fresh.Pin(path); err != nil {
		return nil, fmt.Errorf("program %s: %w", name, err)
	}
	return fresh, nil
}

// replaceProgram makes the LB hold prog as the loaded program name.
func (lb *LB) replaceProgram(name string, prog *ebpf.Program) {
	slot := map[string]**ebpf.Program{
		lbProgLb4Connect4:     &lb.objs.Lb4Connect4,
		lbProgLb4Sendmsg4:     &lb.objs.Lb4Sendmsg4,
		lbProgLb4Recvmsg4:     &lb.objs.Lb4Recvmsg4,
		lbProgLb4Getpeername4: &lb.objs.Lb4Getpeername4,
		lbProgLb4Ingress:      &lb.objs.Lb4Ingress,
		lbProgLb4Egress:       &lb.objs.Lb4Egress,
	}[name]
	(*slot).Close()
	*slot = prog
}

// sameProgram reports whether two programs have the same instructions (the
// kernel's tag) and use the same maps.
func sameProgram(a, b *ebpf.Program) (bool, error) {
	ai, err := a.Info()
	if err != nil {
		return false, err
	}
	bi, err := b.Info()
	if err != nil {
		return false, err
	}
	am, aok := ai.MapIDs()
	bm, bok := bi.MapIDs()
	if !aok || !bok {
		return false, nil
	}
	slices.Sort(am)
	slices.Sort(bm)
	return ai.Tag == bi.Tag && slices.Equal(am, bm), nil
}

// attachHook makes the pinned link of h attach prog to h's target.
func (lb *LB) attachHook(h hook, prog *ebpf.Program, cgID uint64) error {
	path := filepath.Join(lb.dir, h.pin)
	l, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		info, err := l.Info()
		if err == nil && sameTarget(info, h, cgID) {
			if info.Program != progID(prog) {
				if err := l.Update(prog); err != nil {
					l.Close()
					return fmt.Errorf("update %s: %w", h.pin, err)
				}
				lb.log.Info("updated attached program", "link", h.pin)
			}
			lb.links = append(lb.links, l)
			return nil
		}
		// The target went away or changed (interface re-created,
		// another cgroup): attach anew.
		l.Close()
		if err := detachPinned(path); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("load %s: %w", h.pin, err)
	}

	if h.ifname != "" {
		l, err = link.AttachTCX(link.TCXOptions{Interface: h.ifindex, Program: prog, Attach: h.attach})
	} else {
		l, err = link.AttachCgroup(link.CgroupOptions{Path: lb.cgroup, Attach: h.attach, Program: prog})
	}
	if err != nil {
		return fmt.Errorf("attach %s: %w", h.pin, err)
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		return fmt.Errorf("pin %s: %w", h.pin, err)
	}
	lb.log.Info("attached", "link", h.pin)
	lb.links = append(lb.links, l)
	return nil
}

func progID(p *ebpf.Program) ebpf.ProgramID {
	info, err := p.Info()
	if err != nil {
		return 0
	}
	id, _ := info.ID()
	return id
}

// sameTarget reports whether a pinned link still attaches where h wants.
func sameTarget(info *link.Info, h hook, cgID uint64) bool {
	if h.ifname != "" {
		tcx := info.TCX()
		return tcx != nil && int(tcx.Ifindex) == h.ifindex && ebpf.AttachType(tcx.AttachType) == h.attach
	}
	cg := info.Cgroup()
	return cg != nil && cg.CgroupId == cgID && ebpf.AttachType(cg.AttachType) == h.attach
}

// detachPinned detaches the link pinned at path and removes the pin.
func detachPinned(path string) error {
	// A link whose target is gone cannot be detached, and needs not be:
	// removing its last reference (the pin) releases it.
	if l, err := link.LoadPinnedLink(path, nil); err == nil {
		_ = l.Detach()
		l.Close()
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
