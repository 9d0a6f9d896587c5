// Package apiserver serves the store over HTTP/JSON.
//
// It is read-only for people: desired state changes only through Git. Reads
// are blocking queries: a client passes the index of its last answer
// (?index=N&wait=30s) and the server holds the request until the store has
// something newer or the wait passes. Every answer carries the index in the
// X-Keelson-Index header and body. Secret values are never served. Answers
// are compact JSON, indented for ?pretty=true or a person at curl or wget.
//
// One answer is not the store's alone: an object's history
// (GET /v1/history/...) comes from Git through a HistorySource, joined with
// the store's revision records by commit SHA.
package apiserver
