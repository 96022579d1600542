//go:build tools

// Pins MinIO's client command in this module; `go build github.com/minio/mc` builds it.
package tools

import _ "github.com/minio/mc"
