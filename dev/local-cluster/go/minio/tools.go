//go:build tools

// Pins MinIO's server command in this module; `go build github.com/minio/minio` builds it.
package tools

import _ "github.com/minio/minio"
