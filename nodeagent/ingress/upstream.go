package ingress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// upstream is the HTTP/1.1 client the proxy reaches endpoints with: a pool
// of kept-alive connections per endpoint address, used by the request's own
// goroutine. http.Transport would do, but it runs two goroutines per
// connection and hands every request and response between them; doing the
// write and the read in the request's goroutine halves the proxy's
// scheduling work per request (see BenchmarkVsNginx).
//
// A connection is in the pool only while idle. Before one that has been idle
// a while is reused, a non-blocking peek checks that the endpoint has not
// closed it meanwhile (an idle timeout on its side); a reused connection
// that fails anyway before any answer is retried on a new one when the
// request is idempotent and has no body, as http.Transport does.
type upstream struct {
	dialer                *net.Dialer
	maxIdlePerAddr        int
	idleTimeout           time.Duration
	responseHeaderTimeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*upConn // by endpoint address; the most recent last
	busy   map[*upConn]struct{} // in use by an HTTP/1.1 request (HTTP/2 ones end with their context)
	closed bool
}

func newUpstream(cfg Config) *upstream {
	return &upstream{
		dialer:                &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		maxIdlePerAddr:        cfg.MaxIdleConnsPerEndpoint,
		idleTimeout:           90 * time.Second,
		responseHeaderTimeout: cfg.ResponseHeaderTimeout,
		idle:                  map[string][]*upConn{},
		busy:                  map[*upConn]struct{}{},
	}
}

// upConn is one connection to an endpoint, owned by one request at a time
// (or by the pool).
type upConn struct {
	addr      string
	c         net.Conn
	rc        syscall.RawConn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// dialError marks a failure to connect: nothing of the request was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// checkIdleAfter is how long a connection may have been idle before it is
// checked with a peek before reuse. Endpoints close idle connections after
// seconds (gunicorn 2 s, Node.js and Apache 5 s, nginx 75 s), not sooner;
// under load, connections are reused within milliseconds and the peek (a
// system call per request) would only cost.
const checkIdleAfter = 250 * time.Millisecond

// aLongTimeAgo is a deadline that makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

func (u *upstream) dial(ctx context.Context, addr string) (*upConn, error) {
	c, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	pc := &upConn{addr: addr, c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}
	if sc, ok := c.(syscall.Conn); ok {
		pc.rc, _ = sc.SyscallConn()
	}
	return pc, nil
}

// get takes an idle connection to addr that is still open, or dials one.
func (u *upstream) get(ctx context.Context, addr string) (pc *upConn, reused bool, err error) {
	now := time.Now()
	for {
		u.mu.Lock()
		stack := u.idle[addr]
		if len(stack) == 0 {
			u.mu.Unlock()
			break
		}
		pc = stack[len(stack)-1]
		stack[len(stack)-1] = nil
		u.idle[addr] = stack[:len(stack)-1]
		u.mu.Unlock()
		idle := now.Sub(pc.idleSince)
		if idle < u.idleTimeout && (idle < checkIdleAfter || pc.open()) {
			return pc, true, nil
		}
		pc.c.Close()
	}
	pc, err = u.dial(ctx, addr)
	return pc, false, err
}

// open tells, without blocking, whether the endpoint has left the idle
// connection alone: nothing to read (neither an answer nor the end).
func (pc *upConn) open() bool {
	if pc.br.Buffered() > 0 {
		return false // an answer nobody asked for
	}
	if pc.rc == nil {
		return true
	}
	alive := false
	var buf [1]byte
	err := pc.rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN
		return true
	})
	return err == nil && alive
}

// put returns an idle connection to the pool, or closes it.
func (u *upstream) put(pc *upConn) {
	pc.idleSince = time.Now()
	u.mu.Lock()
	if !u.closed && len(u.idle[pc.addr]) < u.maxIdlePerAddr {
		u.idle[pc.addr] = append(u.idle[pc.addr], pc)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	pc.c.Close()
}

// retain closes the idle connections to endpoints not in keep.
func (u *upstream) retain(keep map[string]bool) {
	var drop []*upConn
	u.mu.Lock()
	for addr, stack := range u.idle {
		if !keep[addr] {
			drop = append(drop, stack...)
			delete(u.idle, addr)
		}
	}
	u.mu.Unlock()
	for _, pc := range drop {
		pc.c.Close()
	}
}

// close closes the idle connections and those in use, and keeps none from
// now on.
func (u *upstream) close() {
	u.retain(nil)
	u.mu.Lock()
	u.closed = true
	for pc := range u.busy {
		pc.c.Close()
	}
	u.mu.Unlock()
}

// idempotent requests without a body may be sent again when a kept-alive
// connection turns out to be closed before any answer came.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

// roundTrip sends req to the endpoint addr and reads the answer's headers.
// The body of the answer gives the connection back to the pool when it has
// been read to its end.
func (u *upstream) roundTrip(req *http.Request, addr string) (*http.Response, error) {
	ctx := req.Context()
	for {
		pc, reused, err := u.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := u.send(ctx, pc, req)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		var fresh *freshConnError
		if reused && errors.As(err, &fresh) && ctx.Err() == nil && (fresh.unwritten || replayable(req)) {
			continue // the endpoint had closed it: on a new connection
		}
		return nil, err
	}
}

// freshConnError is a failure before any byte of an answer arrived;
// unwritten when not even the request went out.
type freshConnError struct {
	err       error
	unwritten bool
}

func (e *freshConnError) Error() string { return e.err.Error() }
func (e *freshConnError) Unwrap() error { return e.err }

func (u *upstream) send(ctx context.Context, pc *upConn, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(aLongTimeAgo) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		if body, ok := req.Body.(*trackedBody); ok && body.read.Load() {
			return nil, err
		}
		return nil, &freshConnError{err: err, unwritten: true}
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, &freshConnError{err: err, unwritten: req.Body == nil || req.Body == http.NoBody}
	}
	if u.responseHeaderTimeout > 0 {
		pc.c.SetReadDeadline(time.Now().Add(u.responseHeaderTimeout))
	}
	var resp *http.Response
	for {
		if _, err := pc.br.Peek(1); err != nil {
			stop()
			return nil, &freshConnError{err: err}
		}
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			return nil, err
		}
		// 1xx answers other than 101 come before the real one (100
		// Continue, 103 Early Hints): skipped.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if u.responseHeaderTimeout > 0 {
		pc.c.SetReadDeadline(time.Time{})
		if ctx.Err() != nil { // canceled meanwhile: the reset must not undo it
			pc.c.SetDeadline(aLongTimeAgo)
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy takes the connection over; the request's context
		// still closes it.
		resp.Body = &upgradedConn{pc: pc}
		return resp, nil
	}
	resp.Body = &upBody{rc: resp.Body, pc: pc, u: u, stop: stop, reuse: !resp.Close && !req.Close}
	return resp, nil
}

// upBody is an answer's body; read to its end, it returns the connection
// to the pool.
type upBody struct {
	rc    io.ReadCloser
	pc    *upConn
	u     *upstream
	stop  func() bool
	reuse bool
	done  bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		// Not read to its end: the rest cannot be skipped cheaply.
		b.release(false)
	}
	return nil
}

func (b *upBody) release(atEnd bool) {
	b.done = true
	// stop is false when the cancellation already ran (or is running):
	// then the connection has a deadline in the past.
	if b.stop() && atEnd && b.reuse {
		b.u.put(b.pc)
		return
	}
	b.pc.c.Close()
}

// upgradedConn is the endpoint's side of an upgraded connection (101), with
// what its reader had buffered.
type upgradedConn struct{ pc *upConn }

func (c *upgradedConn) Read(p []byte) (int, error)  { return c.pc.br.Read(p) }
func (c *upgradedConn) Write(p []byte) (int, error) { return c.pc.c.Write(p) }
func (c *upgradedConn) Close() error                { return c.pc.c.Close() }
