// Package client talks to a Keelson API server (the controller, or later a
// standalone agent). It is used by the CLI and by agents.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/api"
)

// ErrNotFound is returned for a 404 answer.
var ErrNotFound = errors.New("not found")

// Client is an API client. It is safe for concurrent use.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// WithToken returns a copy of c that authenticates as an agent.
func (c *Client) WithToken(token string) *Client {
	x := *c
	x.token = token
	return &x
}

// New returns a client for the server at base (for example http://127.0.0.1:7676).
func New(base string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server address %q: want http://HOST:PORT", base)
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{}}, nil
}

// Query narrows a list. Index and Wait make it a blocking query.
type Query struct {
	Kind      string
	Namespace string
	Selector  string
	// Node, for an agent asking for Secrets, is its node: it gets those
	// its pods and the cluster's Ingresses use, no others.
	Node  string
	Index uint64
	Wait  time.Duration
}

func (q Query) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("kind", q.Kind)
	set("namespace", q.Namespace)
	set("selector", q.Selector)
	set("node", q.Node)
	if q.Index > 0 {
		v.Set("index", strconv.FormatUint(q.Index, 10))
	}
	if q.Wait > 0 {
		v.Set("wait", q.Wait.String())
	}
	return v
}

// Status returns the sync status.
func (c *Client) Status(ctx context.Context, q Query) (*api.Status, error) {
	var out api.Status
	return &out, c.get(ctx, "/v1/status", q.values(), &out)
}

// Objects lists desired objects.
func (c *Client) Objects(ctx context.Context, q Query) (*api.ObjectList, error) {
	var out api.ObjectList
	return &out, c.get(ctx, "/v1/objects", q.values(), &out)
}

// Object returns one object; namespace is empty for cluster-scoped kinds.
func (c *Client) Object(ctx context.Context, kind, namespace, name string) (*api.Object, error) {
	p := "/v1/objects/" + url.PathEscape(kind) + "/"
	if namespace != "" {
		p += url.PathEscape(namespace) + "/"
	}
	p += url.PathEscape(name)
	var out api.Object
	return &out, c.get(ctx, p, nil, &out)
}

// Revisions lists the sync history, newest first.
func (c *Client) Revisions(ctx context.Context, limit int, q Query) (*api.RevisionList, error) {
	v := q.values()
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out api.RevisionList
	return &out, c.get(ctx, "/v1/revisions", v, &out)
}

// Events lists events, of one object when key is set.
func (c *Client) Events(ctx context.Context, key string, q Query) (*api.EventList, error) {
	v := q.values()
	if key != "" {
		v.Set("object", key)
	}
	var out api.EventList
	return &out, c.get(ctx, "/v1/events", v, &out)
}

// History lists the commits that changed an object, newest first, with
// what became of each; at most limit (all when 0).
func (c *Client) History(ctx context.Context, kind, namespace, name string, limit int) (*api.History, error) {
	v := url.Values{}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out api.History
	return &out, c.get(ctx, "/v1/history/"+url.PathEscape(kind)+"/"+url.PathEscape(namespace)+"/"+url.PathEscape(name), v, &out)
}

func (c *Client) get(ctx context.Context, path string, v url.Values, out any) error {
	u := c.base + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return c.do(ctx, http.MethodGet, u, path, nil, out)
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, u, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("keelson API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("keelson API at %s: read %s: %w", c.base, path, err)
	}
	if resp.StatusCode >= 300 {
		var e api.Error
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w", msg, ErrNotFound)
		case http.StatusUnauthorized:
			return fmt.Errorf("%s: %w", msg, ErrUnauthorized)
		case http.StatusConflict:
			return fmt.Errorf("%s: %w", msg, ErrConflict)
		}
		return fmt.Errorf("keelson API at %s: %s: %s", c.base, resp.Status, msg)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("keelson API at %s: decode %s: %w", c.base, path, err)
	}
	return nil
}

func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set(api.AgentTokenHeader, "Bearer "+c.token)
	}
}

// Errors of agent calls.
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrConflict     = errors.New("conflict")
)

// Register joins a node to the controller and returns it with its pod CIDR.
func (c *Client) Register(ctx context.Context, reg *api.NodeRegistration) (*corev1.Node, error) {
	var out corev1.Node
	return &out, c.do(ctx, http.MethodPost, c.base+"/v1/nodes", "/v1/nodes", reg, &out)
}

// RenewLease renews a node's lease.
func (c *Client) RenewLease(ctx context.Context, node string) error {
	p := "/v1/nodes/" + url.PathEscape(node) + "/lease"
	return c.do(ctx, http.MethodPut, c.base+p, p, struct{}{}, nil)
}

// ServicesSynced tells the controller the node programmed the services up
// to store index index.
func (c *Client) ServicesSynced(ctx context.Context, node string, index uint64) error {
	p := "/v1/nodes/" + url.PathEscape(node) + "/services"
	return c.do(ctx, http.MethodPut, c.base+p+"?index="+strconv.FormatUint(index, 10), p, struct{}{}, nil)
}

// ReportPod sends a pod's status from its node.
func (c *Client) ReportPod(ctx context.Context, node string, p *corev1.Pod) error {
	path := "/v1/pods/" + url.PathEscape(p.Namespace) + "/" + url.PathEscape(p.Name) + "/status"
	return c.do(ctx, http.MethodPut, c.base+path+"?node="+url.QueryEscape(node), path, p, nil)
}

// ForgetPod tells the controller a pod is gone from its node.
func (c *Client) ForgetPod(ctx context.Context, node, namespace, name, uid string) error {
	path := "/v1/pods/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + "/status"
	q := url.Values{"node": {node}, "uid": {uid}}
	return c.do(ctx, http.MethodDelete, c.base+path+"?"+q.Encode(), path, nil, nil)
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context, q Query) (*api.NodeList, error) {
	var out api.NodeList
	return &out, c.get(ctx, "/v1/nodes", q.values(), &out)
}

// Services lists the Services with their endpoint slices.
func (c *Client) Services(ctx context.Context, q Query) (*api.ServiceList, error) {
	var out api.ServiceList
	return &out, c.get(ctx, "/v1/services", q.values(), &out)
}

// EndpointSlices lists the endpoint slices of Services.
func (c *Client) EndpointSlices(ctx context.Context, q Query) (*api.EndpointSliceList, error) {
	var out api.EndpointSliceList
	return &out, c.get(ctx, "/v1/endpointslices", q.values(), &out)
}

// PodQuery narrows a pod list.
type PodQuery struct {
	Namespace string
	Node      string
	Selector  string
	Index     uint64
	Wait      time.Duration
}

// Pods lists pods with their status.
func (c *Client) Pods(ctx context.Context, q PodQuery) (*api.PodList, error) {
	v := Query{Namespace: q.Namespace, Selector: q.Selector, Index: q.Index, Wait: q.Wait}.values()
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	var out api.PodList
	return &out, c.get(ctx, "/v1/pods", v, &out)
}

// Pod returns one pod with its status.
func (c *Client) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var out corev1.Pod
	return &out, c.get(ctx, "/v1/pods/"+url.PathEscape(namespace)+"/"+url.PathEscape(name), nil, &out)
}

// LogOptions select a log.
type LogOptions struct {
	Container string
	Previous  bool
	Tail      int // negative: all
	Follow    bool
}

// Logs copies a container's log to w; with Follow, until ctx ends.
func (c *Client) Logs(ctx context.Context, namespace, name string, o LogOptions, w io.Writer) error {
	v := url.Values{}
	if o.Container != "" {
		v.Set("container", o.Container)
	}
	if o.Previous {
		v.Set("previous", "true")
	}
	if o.Follow {
		v.Set("follow", "true")
	}
	v.Set("tail", strconv.Itoa(o.Tail))
	u := c.base + "/v1/pods/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + "/log?" + v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("keelson API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		var e api.Error
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w", msg, ErrNotFound)
		}
		return fmt.Errorf("%s", msg)
	}
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Usage returns the CPU and memory of nodes and pods (keelson top).
func (c *Client) Usage(ctx context.Context) (*api.UsageList, error) {
	var out api.UsageList
	return &out, c.get(ctx, "/v1/usage", nil, &out)
}
