package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cubekv/cubekv/node"
)

// diskCollectors are the gauges of the data dir's disk and the Raft
// stores' writes: free bytes, whether they are under --low-space-warning
// (etcd's space quota alarm, as a gauge), and whether writes are failing.
func diskCollectors(n *node.Node, dataDir string, lowSpace uint64,
	gauge, counter func(name, help string, f func() float64) prometheus.Collector) []prometheus.Collector {
	free := func() (uint64, bool) {
		f, err := node.FreeSpace(dataDir)
		return f, err == nil
	}
	return []prometheus.Collector{
		gauge("cubekv_disk_free_bytes", "Bytes free for kvnode on the data dir's file system (-1 when unknown).", func() float64 {
			if f, ok := free(); ok {
				return float64(f)
			}
			return -1
		}),
		gauge("cubekv_disk_low_space", "1 when the data dir's free bytes are below --low-space-warning.", func() float64 {
			if f, ok := free(); ok && lowSpace > 0 && f < lowSpace {
				return 1
			}
			return 0
		}),
		gauge("cubekv_storage_failing", "1 while writes to the Raft log, stable store or snapshots fail (a full disk): the node is not ready and falls behind.", func() float64 {
			if n.StorageError() != nil {
				return 1
			}
			return 0
		}),
		counter("cubekv_storage_write_failures_total", "Failed writes to the Raft log, stable store and snapshots.", func() float64 { return float64(n.StorageFailures()) }),
	}
}
