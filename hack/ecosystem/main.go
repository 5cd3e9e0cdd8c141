// Command vco-ecosystem evaluates a Kubernetes object the way the ecosystem's own code does, so
// the operator's tests can check its status against the real implementations rather than
// against a copy of their rules:
//
//	vco-ecosystem kstatus < object.yaml
//	    the verdict of sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute (what Flux health checks,
//	    kpt and cli-utils waiters use)
//	vco-ecosystem argocd-health SCRIPT.lua < object.yaml
//	    the result of an Argo CD resource health script run by gopher-lua, the interpreter Argo CD
//	    embeds, with only the libraries Argo CD opens for a custom health check
//
// The object is read as YAML or JSON on stdin. The verdict is printed as one JSON object
// {"status": ..., "message": ...} on stdout. Errors go to stderr with exit status 1.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// verdict is what both subcommands print.
type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "vco-ecosystem: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: vco-ecosystem kstatus | argocd-health SCRIPT.lua  (object on stdin)")
	}
	obj, err := readObject(stdin)
	if err != nil {
		return err
	}
	var v verdict
	switch args[0] {
	case "kstatus":
		v, err = kstatus(obj)
	case "argocd-health":
		if len(args) != 2 {
			return fmt.Errorf("usage: vco-ecosystem argocd-health SCRIPT.lua < object")
		}
		var script []byte
		script, err = os.ReadFile(args[1])
		if err != nil {
			return err
		}
		v, err = argocdHealth(obj, string(script))
	default:
		return fmt.Errorf("unknown subcommand %q (want kstatus or argocd-health)", args[0])
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(v)
}

// readObject decodes YAML or JSON the way the apiserver's clients do: integers stay int64, as in
// the unstructured objects that kstatus and Argo CD are given.
func readObject(r io.Reader) (*unstructured.Unstructured, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading the object: %w", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("the object is neither YAML nor JSON: %w", err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("the object is not a Kubernetes object: %w", err)
	}
	return obj, nil
}
