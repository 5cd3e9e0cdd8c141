package main

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// kstatus returns the verdict of cli-utils' status.Compute, unchanged.
func kstatus(obj *unstructured.Unstructured) (verdict, error) {
	res, err := status.Compute(obj)
	if err != nil {
		return verdict{}, err
	}
	return verdict{Status: res.Status.String(), Message: res.Message}, nil
}
