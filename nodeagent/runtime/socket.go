package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// DaemonSocket is the socket of the private containerd that StartDaemon
// runs for dir: dir/containerd.sock, or a short path under /run/keelson
// when that would be too long for a unix socket.
func DaemonSocket(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	socket := filepath.Join(dir, "containerd.sock")
	if len(socket) > maxSocketPath {
		sum := sha256.Sum256([]byte(dir))
		socket = filepath.Join("/run/keelson", hex.EncodeToString(sum[:8]), "containerd.sock")
	}
	return socket
}
