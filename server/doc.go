// Package server is cubekv's Thrift front door: it implements the generated
// kv.KV service over a Store (satisfied by *node.Node), validates every
// request against explicit size limits before anything is proposed, applies
// the consistency level of each read, recovers handler panics into errors,
// and maps every error to a Thrift exception in one table (errors.go).
package server
