package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver"
	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/nodeagent"
)

// agentExec serves exec streams from the agent: the command runs in the
// container through containerd.
func agentExec(a *nodeagent.Agent) apiserver.ExecFunc {
	up := websocket.Upgrader{
		Subprotocols: []string{api.ExecProtocol},
		// The API listens on loopback by default and carries no cookies.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return func(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) {
		q := r.URL.Query()
		cmd := q["command"]
		if len(cmd) == 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.Error{Error: "query parameter command: at least one is needed"})
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade answered the client
		}
		defer conn.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stdin io.Reader
		pr, pw := io.Pipe()
		if q.Get("stdin") == "true" {
			stdin = pr
		}
		// The reader ends the command when the client goes away, and feeds stdin.
		go func() {
			defer cancel()
			for {
				_, data, err := conn.ReadMessage()
				if err != nil {
					pw.CloseWithError(err)
					return
				}
				if len(data) == 0 {
					continue
				}
				switch data[0] {
				case api.ChannelStdin:
					if _, err := pw.Write(data[1:]); err != nil {
						return
					}
				case api.ChannelClose:
					pw.Close()
				}
			}
		}()
		var mu sync.Mutex
		out := &wsWriter{conn: conn, ch: api.ChannelStdout, mu: &mu}
		errw := &wsWriter{conn: conn, ch: api.ChannelStderr, mu: &mu}
		code, err := a.Exec(ctx, pod, q.Get("container"), cmd, q.Get("tty") == "true", stdin, out, errw)
		st := api.ExecStatus{ExitCode: code}
		if err != nil {
			st.Error = err.Error()
		}
		b, _ := json.Marshal(st)
		mu.Lock()
		_ = conn.WriteMessage(websocket.BinaryMessage, append([]byte{api.ChannelStatus}, b...))
		_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		mu.Unlock()
	}
}

// wsWriter writes to one channel of an exec stream.
type wsWriter struct {
	conn *websocket.Conn
	ch   byte
	mu   *sync.Mutex
}

func (w *wsWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.conn.WriteMessage(websocket.BinaryMessage, append([]byte{w.ch}, p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func newExecCmd() *cobra.Command {
	var (
		namespace, container string
		stdin, tty           bool
	)
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: `Exec runs a command in a running container through containerd, as kubectl
exec does: -i passes standard input, -t gives it a terminal, and keelson exits
with the command's exit code.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			// As kubectl: a terminal is for typing into, so -t needs -i and
			// a standard input that is a terminal; otherwise the command
			// runs without one (with a word on stderr when -i was given).
			f, isFile := cmd.InOrStdin().(*os.File)
			inTerminal := isFile && term.IsTerminal(int(f.Fd()))
			if tty && stdin && !inTerminal {
				fmt.Fprintln(cmd.ErrOrStderr(), "Unable to use a TTY - input is not a terminal or the right kind of file")
			}
			tty = tty && stdin && inTerminal
			o := client.ExecOptions{Container: container, Command: args[1:], TTY: tty}
			if stdin {
				o.Stdin = cmd.InOrStdin()
			}
			if tty {
				old, err := term.MakeRaw(int(f.Fd()))
				if err == nil {
					defer term.Restore(int(f.Fd()), old)
				}
			}
			code, err := c.Exec(cmd.Context(), namespace, args[0], o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace")
	f.StringVarP(&container, "container", "c", "", "container (needed when the pod has several)")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass standard input to the command")
	f.BoolVarP(&tty, "tty", "t", false, "give the command a terminal (with -i, when standard input is one)")
	return cmd
}
