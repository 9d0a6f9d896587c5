package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// The endpoint side of the HTTP/1.1 proxy: fasthttp's request and response
// types over the connection pool of upstream.go.

// bodyInMemory is the largest answer body of known length that is read
// whole from the endpoint before it is sent on (as nginx buffers); longer
// ones, and those of unknown length (event streams, chunked), are streamed,
// the latter flushed to the client at every read.
const bodyInMemory = 64 << 10

// fastEndpoints sends requests to a route's endpoints in turn (round robin)
// and tries the next when a connection cannot be made.
type fastEndpoints struct {
	up *upstream
	t  *endpointTransport // the round-robin counter and retries metric, shared with HTTP/2
}

// do sends req and reads the answer into resp: its head, and its body when
// that is small and of known length. Otherwise it returns the body, which
// the caller must close. client is the connection the request came on.
func (e *fastEndpoints) do(req *fasthttp.Request, resp *fasthttp.Response, client net.Conn) (*fastBody, error) {
	var err error
	retry := false
	for addr := range e.t.tries {
		if retry {
			e.t.retries.Inc()
		}
		var body *fastBody
		body, err = e.up.roundTripFast(req, resp, addr, client)
		var de *dialError
		if err == nil || !errors.As(err, &de) {
			return body, err
		}
		// Nothing was sent: the next endpoint gets the request whole.
		e.t.log.Debug("endpoint refused a connection; trying the next", "endpoint", addr, "err", err)
		retry = true
	}
	return nil, err
}

// dial connects to one of the route's endpoints, tried as do tries them
// (an upgraded connection is not counted as a retry).
func (e *fastEndpoints) dial() (*upConn, error) {
	var err error
	for addr := range e.t.tries {
		var pc *upConn
		if pc, err = e.up.dial(context.Background(), addr); err == nil {
			return pc, nil
		}
	}
	return nil, err
}

// roundTripFast is roundTrip for fasthttp's request and response.
func (u *upstream) roundTripFast(req *fasthttp.Request, resp *fasthttp.Response, addr string, client net.Conn) (*fastBody, error) {
	// Writing a request consumes its body stream: whether it can be sent
	// again is known only before the first try.
	streamed := req.IsBodyStream()
	h := &req.Header
	replay := !streamed && len(req.Body()) == 0 && (h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace())
	for {
		pc, reused, err := u.get(context.Background(), addr)
		if err != nil {
			return nil, err
		}
		u.checkout(pc)
		body, err := u.sendFast(pc, req, resp, client, streamed)
		if err == nil {
			return body, nil
		}
		u.release(pc, false)
		var fresh *freshConnError
		if reused && errors.As(err, &fresh) && (fresh.unwritten || replay) {
			resp.Reset()
			continue // the endpoint had closed it: on a new connection
		}
		return nil, err
	}
}

func (u *upstream) sendFast(pc *upConn, req *fasthttp.Request, resp *fasthttp.Response, client net.Conn, streamed bool) (*fastBody, error) {
	if err := req.Write(pc.bw); err != nil {
		if streamed {
			return nil, err // some of the body may be gone
		}
		return nil, &freshConnError{err: err, unwritten: true}
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, &freshConnError{err: err, unwritten: !streamed && len(req.Body()) == 0}
	}
	resp.Header.SetNoDefaultContentType(true) // an answer without one is passed on without one
	now := time.Now()
	var deadline time.Time
	if u.responseHeaderTimeout > 0 {
		deadline = now.Add(u.responseHeaderTimeout)
	}
	for first := true; ; first = false {
		if err := awaitAnswer(pc, client, now, deadline); err != nil {
			var fresh *freshConnError
			if !first && errors.As(err, &fresh) {
				err = fresh.err // an interim answer came: not a fresh connection
			}
			return nil, err
		}
		if !headBuffered(pc.br) {
			// The rest of the head may take a while: under the whole
			// timeout, not the poll's. Mostly the head came whole; the
			// poll's deadline is then left as it is (a timer change less
			// per request): a body read that may wait clears it, and the
			// next use of the connection sets its own.
			pc.c.SetReadDeadline(deadline)
		}
		if err := resp.Header.Read(pc.br); err != nil {
			return nil, err
		}
		// 1xx answers other than 101 come before the real one: skipped.
		if c := resp.StatusCode(); c >= 200 || c == http.StatusSwitchingProtocols {
			break
		}
	}
	reuse := !resp.Header.ConnectionClose() && !req.Header.ConnectionClose()
	return u.readAnswerBody(pc, resp, req.Header.IsHead(), reuse)
}

// readAnswerBody reads the body of the answer whose head is in resp: into
// resp when it is short, else it returns it as a stream.
func (u *upstream) readAnswerBody(pc *upConn, resp *fasthttp.Response, head, reuse bool) (*fastBody, error) {
	code, n := resp.StatusCode(), resp.Header.ContentLength()
	switch {
	case head || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified:
		resp.SkipBody = true
		u.release(pc, reuse && code != http.StatusSwitchingProtocols)
		return nil, nil
	case n >= 0 && n <= bodyInMemory:
		if pc.br.Buffered() < n {
			pc.c.SetReadDeadline(time.Time{}) // a body has no timeout
		}
		if err := resp.ReadBody(pc.br, 0); err != nil {
			return nil, err
		}
		u.release(pc, reuse)
		return nil, nil
	}
	// The head stays in resp; the body is read through a response of its
	// own, which the server closes when it has copied it to the client.
	pc.c.SetReadDeadline(time.Time{}) // a body has no timeout
	stream := fasthttp.AcquireResponse()
	stream.Header.SetContentLength(n)
	stream.StreamBody = true
	if err := stream.ReadBody(pc.br, 0); err != nil {
		fasthttp.ReleaseResponse(stream)
		return nil, err
	}
	return &fastBody{resp: stream, pc: pc, u: u, size: int64(n), reuse: reuse && n >= -1}, nil
}

// errClientGone is the error of a request whose client closed its
// connection before the endpoint answered.
var errClientGone = errors.New("the client closed its connection")

// clientCheckInterval is how often a request waiting for an endpoint's
// answer checks that its client is still there.
const clientCheckInterval = 100 * time.Millisecond

// awaitAnswer waits for the next byte of the endpoint's answer, until
// deadline (none when zero). While it waits it checks, every
// clientCheckInterval, that the client has not closed its connection (a
// client that timed out): then it gives up with errClientGone. fasthttp
// does not watch a connection while its request is handled, and a
// goroutine per request to do so would cost what this package saves; the
// poll costs only slow requests.
func awaitAnswer(pc *upConn, client net.Conn, now, deadline time.Time) error {
	for {
		next := now.Add(clientCheckInterval)
		if !deadline.IsZero() && deadline.Before(next) {
			next = deadline
		}
		pc.c.SetReadDeadline(next)
		_, err := pc.br.Peek(1)
		if err == nil {
			return nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return &freshConnError{err: err}
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return err
		}
		if client != nil && clientGone(client) {
			return errClientGone
		}
		now = time.Now()
	}
}

// headBuffered tells whether a whole answer head is in br already, so that
// reading it cannot wait.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// clientGone tells, without blocking, whether the client closed (or reset)
// its connection, or the proxy closed it: the kernel's RDHUP (the client's
// FIN came), as nginx watches for it. Unread bytes do not hide it: a TLS
// client that says close_notify before it closes is gone all the same, and
// so is one that pipelined a request and left.
func clientGone(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		gone = err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	})
	return gone || err != nil
}

// checkout counts pc as in use, so that close can end it; once the pool is
// closed it closes pc at once.
func (u *upstream) checkout(pc *upConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		pc.c.Close()
		return
	}
	u.busy[pc] = struct{}{}
}

// forget stops counting pc as in use, leaving it open: an upgraded
// connection belongs to its request from then on.
func (u *upstream) forget(pc *upConn) {
	u.mu.Lock()
	delete(u.busy, pc)
	u.mu.Unlock()
}

// release gives a connection in use back to the pool, or closes it. One
// with bytes nobody asked for (after a HEAD, a 204 or a 304 that had a body
// all the same) is closed: they would be read as the next answer.
func (u *upstream) release(pc *upConn, reuse bool) {
	u.mu.Lock()
	delete(u.busy, pc)
	u.mu.Unlock()
	if reuse && pc.br.Buffered() == 0 {
		u.put(pc)
	} else {
		pc.c.Close()
	}
}

// fastBody is an endpoint's answer body, read as the server copies it to
// the client. Closed, it gives the connection back when all of it was read,
// and calls done with the bytes it gave.
type fastBody struct {
	resp  *fasthttp.Response
	pc    *upConn
	u     *upstream
	size  int64 // -1: chunked; -2: until the endpoint closes
	reuse bool
	n     int64
	eof   bool
	done  func(n int64)
	once  sync.Once
}

func (b *fastBody) Read(p []byte) (int, error) {
	n, err := b.resp.BodyStream().Read(p)
	b.n += int64(n)
	if err == io.EOF || (b.size >= 0 && b.n >= b.size) {
		b.eof = true
	}
	return n, err
}

func (b *fastBody) Close() error {
	b.once.Do(func() {
		b.resp.CloseBodyStream()
		b.u.release(b.pc, b.reuse && b.eof)
		fasthttp.ReleaseResponse(b.resp)
		if b.done != nil {
			b.done(b.n)
		}
	})
	return nil
}
