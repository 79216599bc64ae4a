// Package thrift holds kv.thrift, cubekv's public interface, and the Go code
// generated from it in thrift/kv. The generated code is committed; regenerate
// it with `go generate ./thrift` (needs Debian's thrift-compiler, 0.17).
package thrift

//go:generate sh -c "rm -rf kv && thrift -r --gen go:package_prefix=github.com/cubekv/cubekv/thrift/,skip_remote -out . kv.thrift && gofmt -s -w kv"
