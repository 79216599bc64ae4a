package main

import (
	"fmt"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/server"
	"github.com/cubekv/cubekv/transport"
)

// metrics is the node's Prometheus registry: cubekv's own request, read
// index, proposal, engine and connection metrics, Go runtime and process
// metrics, and raft's and memberlist's metrics through go-metrics.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	readIndex *prometheus.HistogramVec
	proposal  prometheus.Histogram

	// dataDir and lowSpace feed the disk gauges (diskmetrics.go).
	dataDir  string
	lowSpace uint64
}

var _ node.Observer = (*metrics)(nil)

func newMetrics() (*metrics, error) {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cubekv_requests_total",
			Help: "Thrift requests (KV, Cluster and Internal) by method and outcome (ok or the exception answered).",
		}, []string{"method", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cubekv_request_duration_seconds",
			Help:    "Time from a Thrift request's decoding to its answer, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"method"}),
		readIndex: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cubekv_read_index_duration_seconds",
			Help:    "Time to obtain a linearizable read index: local (this leader) or remote (asked of the leader).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"path", "outcome"}),
		proposal: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cubekv_proposal_commands",
			Help:    "Commands carried by each log entry the leader proposes.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.readIndex, m.proposal,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	// raft and memberlist report through go-metrics' process-wide sink;
	// route it into this registry.
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("go-metrics sink: %w", err)
	}
	mc := gometrics.DefaultConfig("cubekv")
	mc.EnableHostname = false
	mc.EnableRuntimeMetrics = false
	// Samples taken on every log write cost more than they tell.
	mc.BlockedPrefixes = []string{"raft.boltdb.logSize", "raft.boltdb.writeCapacity", "raft.boltdb.logBatchSize", "raft.boltdb.logsPerBatch"}
	if _, err := gometrics.NewGlobal(mc, sink); err != nil {
		return nil, fmt.Errorf("go-metrics: %w", err)
	}
	return m, nil
}

// observeRequest is server.Config.Observe.
func (m *metrics) observeRequest(method, outcome string, d time.Duration) {
	m.requests.WithLabelValues(method, outcome).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

// ReadIndex implements node.Observer.
func (m *metrics) ReadIndex(d time.Duration, remote bool, err error) {
	path, outcome := "local", "ok"
	if remote {
		path = "remote"
	}
	if err != nil {
		outcome = "error"
	}
	m.readIndex.WithLabelValues(path, outcome).Observe(d.Seconds())
}

// Proposal implements node.Observer.
func (m *metrics) Proposal(commands int) { m.proposal.Observe(float64(commands)) }

// watch adds gauges and counters read from the node and the Thrift server
// at scrape time.
func (m *metrics) watch(n *node.Node, srv *transport.Server) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	for _, c := range append([]prometheus.Collector{
		gauge("cubekv_engine_keys", "Keys held by the storage engine.", func() float64 { return float64(n.FSM().Len()) }),
		gauge("cubekv_engine_bytes", "Bytes of keys and values held by the storage engine.", func() float64 { return float64(n.FSM().Bytes()) }),
		gauge("cubekv_applied_index", "Raft index the state machine has applied.", func() float64 { return float64(n.FSM().AppliedIndex()) }),
		&statusCollector{n: n},
		counter("cubekv_forwarded_writes_total", "Writes this node forwarded to the leader.", func() float64 { return float64(n.Forwarded()) }),
		gauge("cubekv_thrift_open_connections", "Open Thrift client connections.", func() float64 { return float64(srv.OpenConns()) }),
		counter("cubekv_thrift_rejected_connections_total", "Thrift connections closed at once because the connection cap was reached.", func() float64 { return float64(srv.Rejected()) }),
		counter("cubekv_thrift_accepted_connections_total", "Thrift connections accepted.", func() float64 { return float64(srv.Accepted()) }),
	}, diskCollectors(n, m.dataDir, m.lowSpace, gauge, counter)...) {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// statusCollector reports the gauges that come from node.Status, asking
// for it once per scrape (it goes through raft's main loop).
type statusCollector struct{ n *node.Node }

var statusDescs = struct {
	commit, term, leader, contact, snapshot *prometheus.Desc
}{
	commit:   prometheus.NewDesc("cubekv_commit_index", "Raft commit index as this node knows it.", nil, nil),
	term:     prometheus.NewDesc("cubekv_term", "Current Raft term.", nil, nil),
	leader:   prometheus.NewDesc("cubekv_is_leader", "1 when this node is the leader.", nil, nil),
	contact:  prometheus.NewDesc("cubekv_last_leader_contact_seconds", "Seconds since this node last heard from a leader (0 on the leader, -1 never).", nil, nil),
	snapshot: prometheus.NewDesc("cubekv_snapshot_index", "Raft index of the latest snapshot.", nil, nil),
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- statusDescs.commit
	ch <- statusDescs.term
	ch <- statusDescs.leader
	ch <- statusDescs.contact
	ch <- statusDescs.snapshot
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Status()
	leader, contact := 0.0, -1.0
	if st.Role == node.RoleLeader {
		leader = 1
	}
	if st.LastContact >= 0 {
		contact = st.LastContact.Seconds()
	}
	ch <- prometheus.MustNewConstMetric(statusDescs.commit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(statusDescs.term, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(statusDescs.leader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(statusDescs.contact, prometheus.GaugeValue, contact)
	ch <- prometheus.MustNewConstMetric(statusDescs.snapshot, prometheus.GaugeValue, float64(st.SnapshotIndex))
}

// watches adds the watch gauges: watches waiting on the front door h, and
// the size and reach of the node's change history.
func (m *metrics) watches(h *server.Handler, n *node.Node) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cubekv_watches_waiting", Help: "Watches being served (waiting for an event) on this node."},
			func() float64 { return float64(h.Watching()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cubekv_watch_history_bytes", Help: "Bytes the change history holds (keys, values and per-change overhead)."},
			func() float64 { return float64(n.FSM().HistoryBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cubekv_watch_history_floor", Help: "The change history covers the indexes after this one."},
			func() float64 { floor, _ := n.FSM().HistoryRange(); return float64(floor) }),
	} {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
