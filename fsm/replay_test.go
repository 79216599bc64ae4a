package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// TestFSM_ReplaysALogWrittenBeforeTheCommandTable replays testdata/log-v1.bin, log
// entries as the FSM before the command table wrote and applied them (every
// op, request ids and their duplicates, a stale sequence, a batch, a zero
// client id, commands it refused, transactions without an answer budget),
// and checks every result, the digest, the request-id table and the members
// table against testdata/log-v1.want, which that FSM produced. A log must
// replay the same on every version.
func TestFSM_ReplaysALogWrittenBeforeTheCommandTable(t *testing.T) {
	data, err := os.ReadFile("testdata/log-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/log-v1.want")
	if err != nil {
		t.Fatal(err)
	}
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			describe := func(r *Result) string {
				switch {
				case errors.Is(r.Err, ErrStaleSequence):
					return "stale"
				case errors.Is(r.Err, ErrInvalidCommand):
					return "invalid"
				case r.Err != nil:
					return "error " + r.Err.Error()
				}
				b, err := encodeStruct(nil, 64, r.Write)
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("ok %x dup=%v", b, r.Duplicate)
			}
			var got bytes.Buffer
			r := bufio.NewReader(bytes.NewReader(data))
			for idx := uint64(1); ; idx++ {
				n, err := binary.ReadUvarint(r)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				entry := make([]byte, n)
				if _, err := io.ReadFull(r, entry); err != nil {
					t.Fatal(err)
				}
				switch res := f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: entry}).(type) {
				case *Result:
					fmt.Fprintf(&got, "%d %s\n", idx, describe(res))
				case []*Result:
					for j, rr := range res {
						fmt.Fprintf(&got, "%d.%d %s\n", idx, j, describe(rr))
					}
				}
			}
			_, sum := f.Digest()
			fmt.Fprintf(&got, "digest %x\n", sum)
			for _, c := range f.requests.copyRecords() {
				fmt.Fprintf(&got, "client %d:%d@%d\n", c.clientID, c.seq, c.touched)
			}
			fmt.Fprintf(&got, "members %v\n", f.Members())
			if got.String() != string(want) {
				gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
				for i := range max(len(gl), len(wl)) {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Errorf("line %d:\n got  %.120s\n want %.120s", i+1, g, w)
					}
				}
			}
		})
	}
}
