//go:build tools

// Pins kwok's command in this module; `go build sigs.k8s.io/kwok/cmd/kwok` builds it.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
