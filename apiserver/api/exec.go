package api

// The exec stream: a WebSocket with subprotocol ExecProtocol whose binary
// messages start with a channel byte, as Kubernetes' channel protocol does.
const (
	ExecProtocol = "v1.exec.keelson.dev"

	ChannelStdin  byte = 0
	ChannelStdout byte = 1
	ChannelStderr byte = 2
	// ChannelStatus carries one JSON ExecStatus, the last message.
	ChannelStatus byte = 3
	// ChannelClose from the client closes the command's stdin.
	ChannelClose byte = 255
)

// ExecStatus ends an exec stream.
type ExecStatus struct {
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}
