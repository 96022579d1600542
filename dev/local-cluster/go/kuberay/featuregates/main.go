// Command featuregates is the /manager of the local KubeRay operator image: it runs the real operator (/operator,
// v1.6.2) with the arguments the pinned 1.7.0 chart renders, less the feature gates v1.6.2 does not know that the
// chart sets to false. A gate that does not exist is off, so dropping it changes nothing; one set to true is a
// feature this operator lacks, and the pod fails saying so. Every other argument passes through unchanged.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	_ "github.com/ray-project/kuberay/ray-operator/pkg/features" // registers the operator's gates
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
)

const operator = "/operator"

func main() {
	known := utilfeature.DefaultMutableFeatureGate.GetAll()
	args := []string{operator}
	for _, arg := range os.Args[1:] {
		name, value, found := strings.Cut(arg, "=")
		if found && strings.TrimLeft(name, "-") == "feature-gates" {
			isKnown := func(gate string) bool { _, ok := known[featuregate.Feature(gate)]; return ok }
			arg = name + "=" + strings.Join(knownGates(value, isKnown), ",")
		}
		args = append(args, arg)
	}
	if err := syscall.Exec(operator, args, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "featuregates: exec %s: %v\n", operator, err)
		os.Exit(1)
	}
}

// knownGates keeps the gates the operator knows and drops unknown ones set to false; an unknown gate set to
// anything else ends the process.
func knownGates(list string, isKnown func(string) bool) []string {
	var kept []string
	for _, gate := range strings.Split(list, ",") {
		name, value, _ := strings.Cut(gate, "=")
		switch {
		case gate == "" || isKnown(name):
			if gate != "" {
				kept = append(kept, gate)
			}
		case strings.TrimSpace(value) == "false":
			fmt.Fprintf(os.Stderr, "featuregates: %s is not a gate of this operator; it is set to false, so it is dropped\n", name)
		default:
			fmt.Fprintf(os.Stderr, "featuregates: %s=%s asks for a feature this operator (v1.6.2) does not have\n", name, value)
			os.Exit(1)
		}
	}
	return kept
}
