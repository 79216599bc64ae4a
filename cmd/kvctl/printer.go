package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// printer writes command results in one output format. Keys and values are printed as text.
type printer interface {
	Get(resp *kv.GetResponse) error
	Put(resp *kv.PutResponse) error
	Delete(resp *kv.DeleteResponse) error
	CAS(resp *kv.CASResponse) error
	Scan(entries []*kv.Entry, keysOnly bool) error
	Txn(resp *kv.TxnResponse) error
	Status(rows []statusRow) error
	Members(topo *kv.Topology) error
	MemberChange(resp *kv.MemberChangeResponse) error
	Transfer(resp *kv.TransferLeadershipResponse) error
}

// statusRow is one node's answer to status, or the error it gave.
type statusRow struct {
	// NodeID is the node's id from the topology; empty when the row stands for an endpoint.
	NodeID string
	// Endpoint is the Thrift address asked; empty when nobody knows it.
	Endpoint string
	Status   *kv.StatusResponse
	Err      error
}

// name returns how the row's node is named in messages: its id, else its endpoint.
func (r statusRow) name() string {
	if r.NodeID != "" {
		return r.NodeID
	}
	return r.Endpoint
}

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// millis formats a number of milliseconds as a duration; negative values (unknown) as unknown.
func millis(ms int64, unknown string) string {
	if ms < 0 {
		return unknown
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// simplePrinter prints plain text: a get's value alone, "OK" and the index for writes, one line per
// scanned entry, a table for status.
type simplePrinter struct {
	w io.Writer
}

var _ printer = (*simplePrinter)(nil)

func (p *simplePrinter) Get(resp *kv.GetResponse) error {
	if !resp.Found {
		return nil
	}
	_, err := fmt.Fprintf(p.w, "%s\n", resp.Entry.Value)
	return err
}

func (p *simplePrinter) Put(resp *kv.PutResponse) error {
	if resp.LeaseID != nil {
		_, err := fmt.Fprintf(p.w, "OK index=%d lease=%d\n", resp.Index, *resp.LeaseID)
		return err
	}
	_, err := fmt.Fprintf(p.w, "OK index=%d\n", resp.Index)
	return err
}

func (p *simplePrinter) Delete(resp *kv.DeleteResponse) error {
	if !resp.Deleted {
		return nil
	}
	_, err := fmt.Fprintf(p.w, "OK index=%d\n", resp.Index)
	return err
}

func (p *simplePrinter) CAS(resp *kv.CASResponse) error {
	if !resp.Succeeded {
		if resp.Current == nil {
			_, err := fmt.Fprintf(p.w, "FAILED index=%d current=absent\n", resp.Index)
			return err
		}
		_, err := fmt.Fprintf(p.w, "FAILED index=%d current_mod_index=%d\n", resp.Index, resp.Current.ModIndex)
		return err
	}
	_, err := fmt.Fprintf(p.w, "OK index=%d\n", resp.Index)
	return err
}

func (p *simplePrinter) Scan(entries []*kv.Entry, keysOnly bool) error {
	for _, e := range entries {
		var err error
		if keysOnly {
			_, err = fmt.Fprintf(p.w, "%s\n", e.Key)
		} else {
			_, err = fmt.Fprintf(p.w, "%s\t%s\n", e.Key, e.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *simplePrinter) Txn(resp *kv.TxnResponse) error {
	verdict := "SUCCEEDED"
	if !resp.Succeeded {
		verdict = "FAILED"
	}
	if _, err := fmt.Fprintf(p.w, "%s index=%d\n", verdict, resp.Index); err != nil {
		return err
	}
	for _, r := range resp.Results {
		var err error
		switch {
		case r.Type == kv.OpType_GET && r.Found:
			_, err = fmt.Fprintf(p.w, "get %s\t%s\n", r.Entry.Key, r.Entry.Value)
		case r.Type == kv.OpType_GET:
			_, err = fmt.Fprintf(p.w, "get (not found)\n")
		case r.Type == kv.OpType_PUT:
			_, err = fmt.Fprintf(p.w, "put OK\n")
		case r.Found:
			_, err = fmt.Fprintf(p.w, "del OK\n")
		default:
			_, err = fmt.Fprintf(p.w, "del (not found)\n")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *simplePrinter) Status(rows []statusRow) error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENDPOINT\tROLE\tTERM\tCOMMIT\tAPPLIED\tLEADER\tKEYS\tENGINE\tLAST-CONTACT")
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\tERROR: %v\n", dash(r.NodeID), dash(r.Endpoint), r.Err)
			continue
		}
		s := r.Status
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", s.NodeID, r.Endpoint, s.Role, s.Term,
			s.CommitIndex, s.AppliedIndex, dash(s.LeaderID), s.Keys, s.Engine, millis(s.LastContactMs, "never"))
	}
	return tw.Flush()
}

func (p *simplePrinter) Members(topo *kv.Topology) error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUFFRAGE\tLEADER\tGOSSIP\tTHRIFT\tRAFT\tAPPLIED\tLAST-CONTACT")
	for _, m := range topo.Members {
		leader := ""
		if m.Leader || m.NodeID == topo.LeaderID {
			leader = "*"
		}
		applied := "-"
		if m.AppliedIndex >= 0 {
			applied = fmt.Sprint(m.AppliedIndex)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.NodeID, suffrageName(m.Suffrage), leader,
			gossipName(m.GossipState), dash(m.ThriftAddr), dash(m.RaftAddr), applied, millis(m.LastContactMs, "-"))
	}
	return tw.Flush()
}

func (p *simplePrinter) MemberChange(resp *kv.MemberChangeResponse) error {
	if resp.Suffrage == nil {
		_, err := fmt.Fprintf(p.w, "OK index=%d\n", resp.Index)
		return err
	}
	_, err := fmt.Fprintf(p.w, "OK index=%d suffrage=%s\n", resp.Index, suffrageName(resp.Suffrage))
	return err
}

func (p *simplePrinter) Transfer(resp *kv.TransferLeadershipResponse) error {
	_, err := fmt.Fprintf(p.w, "OK leader=%s term=%d\n", resp.LeaderID, resp.Term)
	return err
}

// jsonPrinter prints one JSON document per result.
type jsonPrinter struct {
	w io.Writer
}

var _ printer = (*jsonPrinter)(nil)

// jsonEntry is an entry as kvctl prints it: key and value as text.
type jsonEntry struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	CreateIndex int64   `json:"create_index"`
	ModIndex    int64   `json:"mod_index"`
	LeaseID     *int64  `json:"lease_id,omitempty"`
}

func toJSONEntry(e *kv.Entry) *jsonEntry {
	if e == nil {
		return nil
	}
	j := &jsonEntry{Key: string(e.Key), CreateIndex: e.CreateIndex, ModIndex: e.ModIndex, LeaseID: e.LeaseID}
	if e.Value != nil {
		v := string(e.Value)
		j.Value = &v
	}
	return j
}

func (p *jsonPrinter) print(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (p *jsonPrinter) Get(resp *kv.GetResponse) error {
	return p.print(struct {
		Found        bool       `json:"found"`
		Entry        *jsonEntry `json:"entry,omitempty"`
		NodeID       string     `json:"node_id"`
		Consistency  string     `json:"consistency"`
		AppliedIndex int64      `json:"applied_index"`
	}{resp.Found, toJSONEntry(resp.Entry), resp.Info.NodeID, resp.Info.Consistency.String(), resp.Info.AppliedIndex})
}

func (p *jsonPrinter) Put(resp *kv.PutResponse) error {
	return p.print(struct {
		Index       int64      `json:"index"`
		CreateIndex int64      `json:"create_index"`
		Previous    *jsonEntry `json:"previous,omitempty"`
		LeaseID     *int64     `json:"lease_id,omitempty"`
	}{resp.Index, resp.CreateIndex, toJSONEntry(resp.Previous), resp.LeaseID})
}

func (p *jsonPrinter) Delete(resp *kv.DeleteResponse) error {
	return p.print(struct {
		Index    int64      `json:"index"`
		Deleted  bool       `json:"deleted"`
		Previous *jsonEntry `json:"previous,omitempty"`
	}{resp.Index, resp.Deleted, toJSONEntry(resp.Previous)})
}

func (p *jsonPrinter) CAS(resp *kv.CASResponse) error {
	return p.print(struct {
		Succeeded bool       `json:"succeeded"`
		Index     int64      `json:"index"`
		Current   *jsonEntry `json:"current,omitempty"`
	}{resp.Succeeded, resp.Index, toJSONEntry(resp.Current)})
}

func (p *jsonPrinter) Scan(entries []*kv.Entry, _ bool) error {
	out := make([]*jsonEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, toJSONEntry(e))
	}
	return p.print(out)
}

func (p *jsonPrinter) Txn(resp *kv.TxnResponse) error {
	type result struct {
		Op    string     `json:"op"`
		Found bool       `json:"found"`
		Entry *jsonEntry `json:"entry,omitempty"`
	}
	results := make([]result, 0, len(resp.Results))
	for _, r := range resp.Results {
		results = append(results, result{opName(r.Type), r.Found, toJSONEntry(r.Entry)})
	}
	return p.print(struct {
		Succeeded bool     `json:"succeeded"`
		Index     int64    `json:"index"`
		Results   []result `json:"results"`
	}{resp.Succeeded, resp.Index, results})
}

func (p *jsonPrinter) Status(rows []statusRow) error {
	type row struct {
		Endpoint    string `json:"endpoint"`
		Error       string `json:"error,omitempty"`
		NodeID      string `json:"node_id,omitempty"`
		Role        string `json:"role,omitempty"`
		Term        int64  `json:"term,omitempty"`
		Commit      int64  `json:"commit_index,omitempty"`
		Applied     int64  `json:"applied_index,omitempty"`
		Leader      string `json:"leader_id,omitempty"`
		Keys        int64  `json:"keys,omitempty"`
		Engine      string `json:"engine,omitempty"`
		Version     string `json:"version,omitempty"`
		LastContact *int64 `json:"last_contact_ms,omitempty"`
	}
	out := make([]row, 0, len(rows))
	for _, r := range rows {
		if r.Err != nil {
			out = append(out, row{Endpoint: r.Endpoint, NodeID: r.NodeID, Error: r.Err.Error()})
			continue
		}
		s := r.Status
		out = append(out, row{r.Endpoint, "", s.NodeID, s.Role.String(), s.Term, s.CommitIndex, s.AppliedIndex,
			s.LeaderID, s.Keys, s.Engine, s.Version, new(s.LastContactMs)})
	}
	return p.print(out)
}

func (p *jsonPrinter) Members(topo *kv.Topology) error {
	type member struct {
		NodeID      string `json:"node_id"`
		Suffrage    string `json:"suffrage"`
		Leader      bool   `json:"leader"`
		Gossip      string `json:"gossip"`
		ThriftAddr  string `json:"thrift_addr"`
		RaftAddr    string `json:"raft_addr"`
		GossipAddr  string `json:"gossip_addr"`
		AdminAddr   string `json:"admin_addr"`
		Applied     int64  `json:"applied_index"`
		LastContact int64  `json:"last_contact_ms"`
		Version     string `json:"version"`
	}
	members := make([]member, 0, len(topo.Members))
	for _, m := range topo.Members {
		members = append(members, member{m.NodeID, suffrageName(m.Suffrage), m.Leader || m.NodeID == topo.LeaderID,
			gossipName(m.GossipState), m.ThriftAddr, m.RaftAddr, m.GossipAddr, m.AdminAddr, m.AppliedIndex,
			m.LastContactMs, m.Version})
	}
	return p.print(struct {
		LeaderID    string   `json:"leader_id"`
		Term        int64    `json:"term"`
		ServedBy    string   `json:"served_by"`
		ConfigIndex int64    `json:"config_index"`
		Members     []member `json:"members"`
	}{topo.LeaderID, topo.Term, topo.ServedBy, topo.ConfigIndex, members})
}

func (p *jsonPrinter) MemberChange(resp *kv.MemberChangeResponse) error {
	var suffrage *string
	if resp.Suffrage != nil {
		suffrage = new(suffrageName(resp.Suffrage))
	}
	return p.print(struct {
		Index    int64   `json:"index"`
		Suffrage *string `json:"suffrage,omitempty"`
	}{resp.Index, suffrage})
}

func (p *jsonPrinter) Transfer(resp *kv.TransferLeadershipResponse) error {
	return p.print(struct {
		LeaderID string `json:"leader_id"`
		Term     int64  `json:"term"`
	}{resp.LeaderID, resp.Term})
}

// opName is the txn spec's name of an op type.
func opName(t kv.OpType) string {
	switch t {
	case kv.OpType_GET:
		return "get"
	case kv.OpType_PUT:
		return "put"
	case kv.OpType_DELETE:
		return "del"
	}
	return t.String()
}
