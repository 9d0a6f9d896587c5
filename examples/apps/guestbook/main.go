// Command guestbook is the example application that `make run` deploys:
// a web tier that shows and signs a guestbook, and a key-value tier that
// keeps its entries. The same binary is both (--kv-server).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	kvServer := flag.Bool("kv-server", false, "run the key-value tier instead of the web tier")
	kv := flag.String("kv", "http://kv:6380", "the key-value tier's URL (web tier)")
	flag.Parse()
	var h http.Handler
	if *kvServer {
		h = newStore()
	} else {
		h = &web{kv: strings.TrimRight(*kv, "/"), client: &http.Client{Timeout: 2 * time.Second}}
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("guestbook (kv-server=%t) listening on %s", *kvServer, *listen)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// store is the key-value tier: lists of strings by key, in memory.
type store struct {
	mu   sync.Mutex
	data map[string][]string
}

func newStore() *store { return &store{data: map[string][]string{}} }

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		fmt.Fprintln(w, "ok")
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/lists/")
	if !ok || key == "" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		_ = json.NewEncoder(w).Encode(s.data[key])
	case http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
		if err != nil || len(b) == 0 {
			http.Error(w, "empty entry", http.StatusBadRequest)
			return
		}
		s.data[key] = append(s.data[key], string(b))
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// web is the web tier.
type web struct {
	kv     string
	client *http.Client
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<title>Guestbook</title>
<h1>{{.Greeting}}</h1>
<p>Served by <b>{{.Host}}</b>.</p>
{{if .Err}}<p><i>The key-value tier is not reachable: {{.Err}}</i></p>{{end}}
<ul>{{range .Entries}}<li>{{.}}</li>{{end}}</ul>
<form method="post" action="/sign"><input name="entry"><button>Sign</button></form>
`))

func (s *web) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		fmt.Fprintln(w, "ok")
	case "/sign":
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		entry := strings.TrimSpace(r.FormValue("entry"))
		if entry != "" {
			resp, err := s.client.Post(s.kv+"/lists/entries", "text/plain", strings.NewReader(entry))
			if err != nil {
				http.Error(w, "key-value tier: "+err.Error(), http.StatusBadGateway)
				return
			}
			resp.Body.Close()
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case "/":
		host, _ := os.Hostname()
		data := struct {
			Greeting, Host, Err string
			Entries             []string
		}{Greeting: os.Getenv("GREETING"), Host: host}
		if data.Greeting == "" {
			data.Greeting = "Guestbook"
		}
		resp, err := s.client.Get(s.kv + "/lists/entries")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&data.Entries)
			resp.Body.Close()
		}
		if err != nil {
			data.Err = err.Error()
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, data)
	default:
		http.NotFound(w, r)
	}
}
