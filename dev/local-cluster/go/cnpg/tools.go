//go:build tools

// Pins CloudNativePG's operator command in this module; `go build github.com/cloudnative-pg/cloudnative-pg/cmd/manager`
// builds it. The same binary is the operator, the bootstrap init container and the instance manager.
package tools

import _ "github.com/cloudnative-pg/cloudnative-pg/cmd/manager"
