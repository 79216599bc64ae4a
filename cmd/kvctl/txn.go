package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/thrift/kv"
)

// txnSpec is the JSON a txn reads from stdin:
//
//	{"compare": [{"key": "k", "target": "value|mod|create|exists", "op": "=|!=|<|>",
//	              "value": "v", "index": 7, "exists": true}],
//	 "success": [{"op": "put|get|del", "key": "k", "value": "v"}],
//	 "failure": [...]}
type txnSpec struct {
	Compare []compareSpec `json:"compare"`
	Success []opSpec      `json:"success"`
	Failure []opSpec      `json:"failure"`
}

type compareSpec struct {
	Key    string  `json:"key"`
	Target string  `json:"target"`
	Op     string  `json:"op"`
	Value  *string `json:"value"`
	Index  *int64  `json:"index"`
	Exists *bool   `json:"exists"`
}

type opSpec struct {
	Op    string  `json:"op"`
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

func newTxnCmd(g *globalOptions) *cobra.Command {
	var rid *requestIDFlag
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Run a transaction read as JSON from stdin (exit 1 when the compares fail)",
		Long: "Reads {\"compare\":[{\"key\",\"target\":\"value|mod|create|exists\",\"op\":\"=|!=|<|>\",\n" +
			"\"value\"|\"index\"|\"exists\"}],\"success\":[{\"op\":\"put|get|del\",\"key\",\"value\"}],\"failure\":[...]}\n" +
			"from stdin. If every compare holds the success ops run, else the failure ops, atomically.",
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTxn(cmd.Context(), g, rid, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	rid = addRequestIDFlag(cmd)
	return cmd
}

// runTxn reads a txnSpec from stdin and runs it, with rid's request id when given (rid may be nil).
// Compares that fail print the outcome and return errCompareFailed.
func runTxn(ctx context.Context, g *globalOptions, rid *requestIDFlag, stdin io.Reader, stdout io.Writer) error {
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	var spec txnSpec
	if err := dec.Decode(&spec); err != nil {
		return usageErrorf("txn: read spec from stdin: %w", err)
	}
	req, err := spec.request()
	if err != nil {
		return err
	}
	req.RequestID = rid.requestID()
	ctx, c, p, done, err := g.session(ctx, stdout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Txn(ctx, req)
	if err != nil {
		return err
	}
	if err := p.Txn(resp); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("txn: %w", errCompareFailed)
	}
	return nil
}

// request converts the spec to a TxnRequest, checking what the server would refuse anyway so the
// user gets a precise message.
func (s *txnSpec) request() (*kv.TxnRequest, error) {
	req := &kv.TxnRequest{Compares: []*kv.Compare{}, Success: []*kv.Op{}, Failure: []*kv.Op{}}
	for i, cs := range s.Compare {
		c, err := cs.compare()
		if err != nil {
			return nil, usageErrorf("txn: compare[%d]: %w", i, err)
		}
		req.Compares = append(req.Compares, c)
	}
	for name, branch := range map[string]struct {
		in  []opSpec
		out *[]*kv.Op
	}{"success": {s.Success, &req.Success}, "failure": {s.Failure, &req.Failure}} {
		for i, os := range branch.in {
			op, err := os.op()
			if err != nil {
				return nil, usageErrorf("txn: %s[%d]: %w", name, i, err)
			}
			*branch.out = append(*branch.out, op)
		}
	}
	return req, nil
}

func (cs *compareSpec) compare() (*kv.Compare, error) {
	c := &kv.Compare{Key: []byte(cs.Key)}
	switch cs.Op {
	case "", "=", "==":
		c.Op = kv.CompareOpPtr(kv.CompareOp_EQUAL)
	case "!=":
		c.Op = kv.CompareOpPtr(kv.CompareOp_NOT_EQUAL)
	case "<":
		c.Op = kv.CompareOpPtr(kv.CompareOp_LESS)
	case ">":
		c.Op = kv.CompareOpPtr(kv.CompareOp_GREATER)
	default:
		return nil, fmt.Errorf("op %q: want =, !=, < or >", cs.Op)
	}
	switch cs.Target {
	case "value":
		if cs.Value == nil {
			return nil, fmt.Errorf("target value needs \"value\"")
		}
		c.Target, c.Value = kv.CompareTarget_VALUE, []byte(*cs.Value)
	case "mod", "create":
		if cs.Index == nil {
			return nil, fmt.Errorf("target %s needs \"index\"", cs.Target)
		}
		c.Target, c.Index = kv.CompareTarget_MOD_INDEX, cs.Index
		if cs.Target == "create" {
			c.Target = kv.CompareTarget_CREATE_INDEX
		}
	case "exists":
		if cs.Exists == nil {
			return nil, fmt.Errorf("target exists needs \"exists\"")
		}
		c.Target, c.Exists = kv.CompareTarget_EXISTS, cs.Exists
	default:
		return nil, fmt.Errorf("target %q: want value, mod, create or exists", cs.Target)
	}
	return c, nil
}

func (os *opSpec) op() (*kv.Op, error) {
	op := &kv.Op{Key: []byte(os.Key)}
	switch os.Op {
	case "put":
		if os.Value == nil {
			return nil, fmt.Errorf("put needs \"value\"")
		}
		op.Type, op.Value = kv.OpType_PUT, []byte(*os.Value)
	case "get", "del":
		if os.Value != nil {
			return nil, fmt.Errorf("%s takes no \"value\"", os.Op)
		}
		op.Type = kv.OpType_GET
		if os.Op == "del" {
			op.Type = kv.OpType_DELETE
		}
	default:
		return nil, fmt.Errorf("op %q: want put, get or del", os.Op)
	}
	return op, nil
}
