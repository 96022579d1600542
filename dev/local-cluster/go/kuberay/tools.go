//go:build tools

// Pins KubeRay's operator command in this module; `go build github.com/ray-project/kuberay/ray-operator` builds it.
package tools

import _ "github.com/ray-project/kuberay/ray-operator"
