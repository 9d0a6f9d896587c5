// Package ingress is the node agent's Ingress proxy: an HTTP and HTTPS
// reverse proxy that serves the routing table of package ingress (imported
// here as routing).
//
// A Server holds one *routing.Table at a time. Update swaps it atomically:
// a request uses the table that was current when it arrived, from start to
// end, and a TLS handshake asks the current table for its certificate, so a
// changed certificate is served to the next connection at once. Tables are
// immutable, so requests never wait for an Update.
//
// For each request the Server matches host and path, redirects plain HTTP to
// HTTPS (308) when the route says so, and proxies to one of the backend's
// ready endpoints (round robin per route), dialled directly: no Service
// address and no kernel load balancer in between. A connection that cannot
// be made to an endpoint is retried on the next one, never once any of the
// request body has been read; a route whose backend has no ready endpoint, or
// cannot be resolved, answers 503 at once. HTTP/2 is offered over TLS (ALPN
// h2). Upgrades (WebSocket) pass through, and event streams and bodies of
// unknown length are flushed to the client at every write.
// The proxy sets X-Forwarded-For, -Host and -Proto from what it sees and
// drops what clients sent in those headers: it is the edge.
//
// HTTP/1.1 clients, plain and over TLS, are served by fasthttp (fast.go):
// no goroutine, request or header map is made per request, and the request
// is written to the endpoint from fasthttp's own parse of it, which halves
// the CPU a request costs next to net/http and httputil.ReverseProxy
// (BenchmarkVsNginx). TLS handshakes are made off the accept loop, and a
// connection that negotiates h2 goes to a net/http server instead, which
// proxies with httputil.ReverseProxy (proxy.go). Both reach endpoints
// through one pool of kept-alive HTTP/1.1 connections per endpoint, used
// from the request's own goroutine rather than through http.Transport (see
// upstream.go); the pool forgets the endpoints a new table no longer has.
// The request target goes to the endpoint byte for byte as the client sent
// it (an absolute-form one is routed by its host and sent origin-form), as
// HTTP/1.1 whatever the client speaks. An answer of known length up to
// 64 KiB is read whole before it is sent on; longer ones and those of
// unknown length are streamed (to an HTTP/1.0 client, which cannot take
// chunks, read whole up to 16 MiB). Hop-by-hop headers, those Connection
// names included, stay on their hop both ways.
//
// A client that closes its connection while its request waits for the
// endpoint ends that request within 100 ms (499): net/http notices it
// itself; for fasthttp the wait checks the client's socket every 100 ms.
//
// Metrics (when Config.Registerer is set): keelson_ingress_requests_total by
// route (ingress, host, path, path_type, service) and status code class,
// keelson_ingress_request_duration_seconds by route, and
// keelson_ingress_upstream_retries_total. A route's series go when a table
// without it arrives. Config.AccessLog gets the combined log format.
//
// Serve runs a fasthttp server per listener and a net/http one for HTTP/2,
// on goroutines the Server owns; Close ends every request, upgraded
// connection and goroutine it started before it returns, and Shutdown does
// so gracefully. Listeners come
// from the caller (the agent binds them, and an eBPF sk_lookup program may
// steer ports 80 and 443 into them).
package ingress
