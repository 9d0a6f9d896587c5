//go:build !linux

package dns

import "syscall"

// freebind does nothing where IP_FREEBIND does not exist: the address must
// be there when the server starts.
func freebind(string, string, syscall.RawConn) error { return nil }
