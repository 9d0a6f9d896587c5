package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/keelson/keelson/apiserver/api"
)

// ExecOptions describe a command to run in a container.
type ExecOptions struct {
	Container string
	Command   []string
	TTY       bool
	// Stdin, when set, is copied to the command until EOF.
	Stdin io.Reader
}

// Exec runs a command in a pod's container and returns its exit code.
func (c *Client) Exec(ctx context.Context, namespace, name string, o ExecOptions, stdout, stderr io.Writer) (int, error) {
	v := url.Values{"command": o.Command}
	if o.Container != "" {
		v.Set("container", o.Container)
	}
	if o.TTY {
		v.Set("tty", "true")
	}
	if o.Stdin != nil {
		v.Set("stdin", "true")
	}
	u := strings.Replace(c.base, "http", "ws", 1) + "/v1/pods/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + "/exec?" + v.Encode()
	d := websocket.Dialer{Subprotocols: []string{api.ExecProtocol}}
	conn, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e api.Error
			msg := strings.TrimSpace(string(body))
			if json.Unmarshal(body, &e) == nil && e.Error != "" {
				msg = e.Error
			}
			if resp.StatusCode == http.StatusNotFound {
				return -1, fmt.Errorf("%s: %w", msg, ErrNotFound)
			}
			return -1, fmt.Errorf("exec: %s", msg)
		}
		return -1, fmt.Errorf("keelson API at %s: %w", c.base, err)
	}
	defer conn.Close()
	var wmu sync.Mutex
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := o.Stdin.Read(buf)
				if n > 0 {
					wmu.Lock()
					werr := conn.WriteMessage(websocket.BinaryMessage, append([]byte{api.ChannelStdin}, buf[:n]...))
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					wmu.Lock()
					_ = conn.WriteMessage(websocket.BinaryMessage, []byte{api.ChannelClose})
					wmu.Unlock()
					return
				}
			}
		}()
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("exec stream ended without an exit status: %w", err)
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case api.ChannelStdout:
			if _, err := stdout.Write(data[1:]); err != nil {
				return -1, err
			}
		case api.ChannelStderr:
			if _, err := stderr.Write(data[1:]); err != nil {
				return -1, err
			}
		case api.ChannelStatus:
			var st api.ExecStatus
			if err := json.Unmarshal(data[1:], &st); err != nil {
				return -1, fmt.Errorf("exec status: %w", err)
			}
			if st.Error != "" {
				return st.ExitCode, errors.New(st.Error)
			}
			return st.ExitCode, nil
		}
	}
}
