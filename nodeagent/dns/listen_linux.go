package dns

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// freebind sets IP_FREEBIND (IPV6_FREEBIND for IPv6) on a socket before it
// is bound, so that it can bind an address the node does not have yet: the
// agent's bridge may get its address after the server starts, and the socket
// receives packets to it from then on.
func freebind(network, _ string, c syscall.RawConn) error {
	level, opt := unix.SOL_IP, unix.IP_FREEBIND
	if network == "tcp6" || network == "udp6" {
		level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set freebind: %w", serr)
	}
	return nil
}
