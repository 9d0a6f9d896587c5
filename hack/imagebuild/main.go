// Command imagebuild packs a Go program of this repository as a container
// image archive, for the examples: go run ./hack/imagebuild -pkg
// ./examples/guestbook -ref keelson.local/guestbook:dev -out DIR/guestbook.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/keelson/keelson/internal/imagebuild"
)

func main() {
	pkg := flag.String("pkg", "", "directory of the Go main package")
	ref := flag.String("ref", "", "image reference, e.g. keelson.local/app:dev")
	out := flag.String("out", "", "archive to write")
	port := flag.String("port", "8080", "port the image exposes")
	flag.Parse()
	if *pkg == "" || *ref == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: imagebuild -pkg DIR -ref REF -out FILE")
		os.Exit(2)
	}
	if err := run(*pkg, *ref, *out, *port); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(pkg, ref, out, port string) error {
	bin, err := imagebuild.GoBinary(pkg)
	if err != nil {
		return err
	}
	name := filepath.Base(filepath.Clean(pkg))
	files := append(imagebuild.BaseFiles(), imagebuild.File{Name: name, Mode: 0o755, Data: bin})
	img, err := imagebuild.Image(files, v1.Config{
		Entrypoint:   []string{"/" + name},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		ExposedPorts: map[string]struct{}{port + "/tcp": {}},
		StopSignal:   "SIGTERM",
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := imagebuild.WriteArchive(ref, img, out); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s)\n", out, ref)
	return nil
}
