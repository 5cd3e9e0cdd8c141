// Command vco-oci builds the operator's multi-platform image as an OCI image layout, from the
// repository's Dockerfile, with nothing pulled and nothing left to chance. Used by
// hack/release.sh; the manifests, the index and the layout are go-containerregistry's, only the
// one layer's tar is written here. (Copying the layout to and from registries, with its
// signatures, is oras's job.)
//
//	vco-oci build -dockerfile FILE -out DIR -tag TAG -created RFC3339 [-label KEY=VALUE]...
//	    OS/ARCH=CONTEXT...
//
// builds one image per platform as the Dockerfile says, from that platform's build context
// directory, gathers them in one image index, writes it to DIR as an OCI layout whose
// index.json names the index TAG, and prints the index digest.
//
// Only what a `FROM scratch` image of files needs is understood: FROM scratch, COPY SRC DEST,
// USER, EXPOSE, ENTRYPOINT and CMD (JSON form); anything else is an error, so the Dockerfile
// that hack/image.sh builds with Docker and the published image cannot drift apart silently.
//
// The same inputs give the same bytes: the files of all COPY instructions go into one layer, in
// a fixed order, with owner 0:0, mode 0755 or 0644 (executable or not) and the -created time;
// the config's creation time is -created; the layer is compressed by the Go standard library's
// gzip (no name, no time in its header).
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "vco-oci: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		return errors.New("usage: vco-oci build ... (see the comment at the top of hack/oci/main.go)")
	}
	return build(args[1:], stdout)
}

// labels collects repeated -label KEY=VALUE flags.
type labels map[string]string

func (l labels) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want KEY=VALUE", s)
	}
	l[k] = v
	return nil
}

// recipe is what the Dockerfile says about the image.
type recipe struct {
	copies     []copyFile // in the Dockerfile's order
	user       string
	ports      map[string]struct{}
	entrypoint []string
	cmd        []string
}

type copyFile struct{ src, dest string }

func parseDockerfile(file string) (*recipe, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &recipe{ports: map[string]struct{}{}}
	sawFrom := false
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instruction, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		at := fmt.Sprintf("%s:%d", file, n)
		if !sawFrom && !strings.EqualFold(instruction, "FROM") {
			return nil, fmt.Errorf("%s: the first instruction must be FROM scratch", at)
		}
		switch strings.ToUpper(instruction) {
		case "FROM":
			if sawFrom || rest != "scratch" {
				return nil, fmt.Errorf("%s: only one FROM scratch is supported", at)
			}
			sawFrom = true
		case "COPY":
			fields := strings.Fields(rest)
			if len(fields) != 2 || strings.HasPrefix(fields[0], "-") || !strings.HasPrefix(fields[1], "/") {
				return nil, fmt.Errorf("%s: only COPY SRC /ABSOLUTE/DEST is supported", at)
			}
			r.copies = append(r.copies, copyFile{src: fields[0], dest: path.Clean(fields[1])})
		case "USER":
			r.user = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				r.ports[p] = struct{}{}
			}
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				return nil, fmt.Errorf("%s: %s must be a JSON array: %w", at, instruction, err)
			}
			if strings.EqualFold(instruction, "CMD") {
				r.cmd = argv
			} else {
				r.entrypoint = argv
			}
		default:
			return nil, fmt.Errorf("%s: %s is not supported (see hack/oci/main.go)", at, instruction)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(r.copies) == 0 {
		return nil, fmt.Errorf("%s: no COPY: the image would be empty", file)
	}
	return r, nil
}

func build(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	dockerfile := fs.String("dockerfile", "", "the Dockerfile that describes the image")
	out := fs.String("out", "", "directory to write the OCI layout to (must not exist)")
	tag := fs.String("tag", "", "name of the index in the layout (org.opencontainers.image.ref.name)")
	createdFlag := fs.String("created", "", "creation time of the image and its files, RFC 3339")
	lbls := labels{}
	fs.Var(lbls, "label", "an OCI label KEY=VALUE on every image and on the index (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dockerfile == "" || *out == "" || *tag == "" || *createdFlag == "" || fs.NArg() == 0 {
		return errors.New("build: -dockerfile, -out, -tag, -created and at least one OS/ARCH=CONTEXT are required")
	}
	created, err := time.Parse(time.RFC3339, *createdFlag)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	created = created.UTC()
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists: the layout is written to a new directory", *out)
	}
	r, err := parseDockerfile(*dockerfile)
	if err != nil {
		return err
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arg := range fs.Args() {
		platform, context, ok := strings.Cut(arg, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 {
			return fmt.Errorf("%q: want OS/ARCH=CONTEXT", arg)
		}
		img, err := image(r, context, osName, arch, created, lbls)
		if err != nil {
			return fmt.Errorf("%s: %w", platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}},
		})
	}
	// The index carries the labels as annotations too, so `crane manifest` or a registry's UI
	// shows the source and revision of a multi-arch reference without opening an image.
	withAnnotations, ok := mutate.Annotations(idx, lbls).(v1.ImageIndex)
	if !ok {
		return errors.New("annotating the index: not an index") // mutate.Annotations keeps the type
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	// ref.name: the name OCI layout tools (oras, skopeo, containerd) select it by.
	if err := p.AppendIndex(withAnnotations, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": *tag,
	})); err != nil {
		return err
	}
	digest, err := withAnnotations.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, digest)
	return nil
}

// image is one platform's image: one layer with the files the Dockerfile copies.
func image(r *recipe, context, osName, arch string, created time.Time, lbls labels) (v1.Image, error) {
	tarball, err := layerTar(r.copies, context, created)
	if err != nil {
		return nil, err
	}
	layer, err := layerFromBytes(tarball)
	if err != nil {
		return nil, err
	}
	var copied []string
	for _, c := range r.copies {
		copied = append(copied, c.dest)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "hack/oci from the Dockerfile: COPY " + strings.Join(copied, " "),
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = osName, arch
	cfg.Created = v1.Time{Time: created}
	cfg.Config = v1.Config{
		User:         r.user,
		ExposedPorts: r.ports,
		Entrypoint:   r.entrypoint,
		Cmd:          r.cmd,
		Labels:       lbls,
	}
	return mutate.ConfigFile(img, cfg)
}

// layerTar is the layer's uncompressed tar: every parent directory and every copied file,
// sorted by path, owner 0:0, the same time on every entry.
func layerTar(copies []copyFile, context string, created time.Time) ([]byte, error) {
	type entry struct {
		mode int64
		data []byte
		dir  bool
	}
	entries := map[string]entry{}
	for _, c := range copies {
		data, err := os.ReadFile(filepath.Join(context, c.src))
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(filepath.Join(context, c.src))
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if info.Mode().Perm()&0o100 != 0 {
			mode = 0o755
		}
		name := strings.TrimPrefix(c.dest, "/")
		entries[name] = entry{mode: mode, data: data}
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			entries[dir+"/"] = entry{mode: 0o755, dir: true}
		}
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		e := entries[name]
		h := &tar.Header{Name: name, Mode: e.mode, ModTime: created, Format: tar.FormatUSTAR}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func layerFromBytes(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
}
