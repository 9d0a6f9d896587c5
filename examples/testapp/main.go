// Command testapp is the small HTTP server that Keelson's tests and examples run as a
// container. It is built as a static binary (CGO_ENABLED=0) and packed into the image
// keelson.test/testapp:1 by internal/testimages.
//
// Endpoints:
//
//	/hostname       the host name
//	/healthz        200 until /fail-health is called, then 500 (/heal restores)
//	/crash?code=N   exits with code N
//	/alloc?mb=N     allocates and touches N MiB and holds it (to trigger an OOM kill)
//	/env            the environment, one KEY=VALUE a line
//	/sleep?ms=N     answers after N milliseconds
//	/echo           echoes the request body
//
// With --udp ADDR it also answers each UDP datagram with its host name, a space and
// the datagram.
//
// As a client, `testapp get URL` prints the body of GET URL and `testapp lookup NAME`
// the addresses NAME resolves to (with Go's own resolver, which reads /etc/resolv.conf:
// static busybox tools cannot resolve names in a bare container).
//
// It listens on $PORT, else --listen (default :8080), logs each request to stdout, and on
// SIGTERM logs "terminating", keeps serving for --term-delay (answering with Connection:
// close, so that kept-alive clients move to other backends), then shuts down and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// client runs one client command and prints its answer.
func client(cmd, arg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cmd == "lookup" {
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err != nil {
			return err
		}
		sort.Strings(addrs)
		for _, a := range addrs {
			fmt.Println(a)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, arg, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", arg, resp.Status)
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 2 && (args[0] == "get" || args[0] == "lookup") {
		return client(args[0], args[1])
	}
	fs := flag.NewFlagSet("testapp", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to listen on ($PORT overrides the port)")
	termDelay := fs.Duration("term-delay", 0, "how long to keep serving after SIGTERM, closing each kept-alive connection after its next answer, before exiting")
	udpAddr := fs.String("udp", "", "also answer UDP datagrams on this address with the host name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr := *listen
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	logger := log.New(os.Stdout, "", log.LstdFlags|log.Lmicroseconds)

	var unhealthy, draining atomic.Bool
	var mu sync.Mutex
	var held [][]byte

	mux := http.NewServeMux()
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) {
		h, _ := os.Hostname()
		fmt.Fprintln(w, h)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if unhealthy.Load() {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/fail-health", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(true)
		fmt.Fprintln(w, "health now failing")
	})
	mux.HandleFunc("/heal", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(false)
		fmt.Fprintln(w, "healthy again")
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		logger.Printf("crashing with code %d", code)
		os.Exit(code)
	})
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb <= 0 {
			http.Error(w, "mb must be a positive integer", http.StatusBadRequest)
			return
		}
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			mu.Lock()
			held = append(held, b)
			mu.Unlock()
		}
		mu.Lock()
		n := len(held)
		mu.Unlock()
		fmt.Fprintf(w, "holding %d MiB\n", n)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Fprintln(w, kv)
		}
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slept %d ms\n", ms)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "testapp")
	})

	srv := &http.Server{
		Addr: addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			logger.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.RequestURI())
			if draining.Load() {
				// Tell kept-alive clients to go elsewhere after this answer.
				w.Header().Set("Connection", "close")
			}
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}

	if *udpAddr != "" {
		pc, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			return err
		}
		defer pc.Close()
		go func() {
			h, _ := os.Hostname()
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(append([]byte(h+" "), buf[:n]...), from)
			}
		}()
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Printf("listening on %s", addr)

	select {
	case err := <-errc:
		return err
	case sig := <-sigs:
		logger.Printf("terminating (signal %v)", sig)
	}
	if *termDelay > 0 {
		draining.Store(true)
		time.Sleep(*termDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Printf("terminated")
	return nil
}
