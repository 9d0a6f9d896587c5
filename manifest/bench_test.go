package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchFiles builds a repository of n files, each a Deployment and its
// Service (2n objects).
func benchFiles(n int) []File {
	files := make([]File, n)
	for i := range files {
		files[i] = benchFile(i, 0)
	}
	return files
}

func benchFile(i, version int) File {
	name := fmt.Sprintf("app-%d", i)
	d := strings.ReplaceAll(deployment, "web", name)
	d = strings.Replace(d, "replicas: 2", fmt.Sprintf("replicas: %d", 2+version%2), 1)
	content := []byte(d + "---\n" + strings.ReplaceAll(service, "web", name))
	sum := sha256.Sum256(content)
	return File{
		Path: fmt.Sprintf("apps/team-%d/%s.yaml", i%50, name),
		Hash: hex.EncodeToString(sum[:]),
		Size: int64(len(content)),
		Read: func() ([]byte, error) { return content, nil },
	}
}

func BenchmarkLoad5000Files(b *testing.B) {
	files := benchFiles(5000)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		r := NewLoader(Options{}).Load(files)
		if !r.OK() || len(r.Objects) != 10000 {
			b.Fatalf("load failed: %d objects, %d errors: %v", len(r.Objects), len(r.Errors), r.Errors[:min(3, len(r.Errors))])
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/op")
}

func BenchmarkLoadOneChanged(b *testing.B) {
	files := benchFiles(5000)
	l := NewLoader(Options{})
	if r := l.Load(files); !r.OK() {
		b.Fatalf("first load failed: %v", r.Errors)
	}
	b.ResetTimer()
	start := time.Now()
	version := 0
	for b.Loop() {
		version++
		files[1234] = benchFile(1234, version)
		r := l.Load(files)
		if !r.OK() || len(r.Objects) != 10000 {
			b.Fatalf("load failed: %v", r.Errors)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/op")
}
