package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
)

// chromiumPath finds Debian's headless-capable Chromium (.ci/run installs
// it). Outside CI a machine without it skips the browser test; in CI its
// absence is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Unmet(t, "no chromium on PATH; install Debian's chromium package (.ci/run does)")
	return ""
}

// TestConsole_Browser drives the web console (/ui/ on the admin port) in
// headless Chromium against a real three-node cluster: it sees three nodes
// and one leader, creates a key through the page and reads it with the
// client, changes it underneath and sees the page refuse the stale edit and
// show the conflict, then kills a follower and sees its row turn red. Each
// state is saved as a screenshot under tests/integration/artifacts/.
func TestConsole_Browser(t *testing.T) {
	exe := chromiumPath(t)
	c := startCluster(t, 3, "--ui-write")
	leader := c.waitLeader(30 * time.Second)
	follower := c.followers(leader)[0]
	kvc := mustClient(t, leader.thriftAddr)
	base := "http://" + leader.adminAddr + "/ui/"

	// Every console response carries the strict CSP, the page included.
	for _, path := range []string{"", "console.js", "api/cluster"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("GET /ui/%s: status %d, CSP %q", path, resp.StatusCode, csp)
		}
	}

	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// waitFor polls a JavaScript predicate in the page with a generous
	// deadline (the machine may be loaded); what names it in a failure.
	waitFor := func(what, expr string, timeout time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
		}
	}
	do := func(js string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js+"; true")); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(artifacts, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Three nodes, one leader (the one the harness found), none red.
	if err := chromedp.Do(bctx, chromedp.Navigate(base)); err != nil {
		t.Fatalf("navigate %s: %v", base, err)
	}
	waitFor("three answering nodes and one leader", fmt.Sprintf(`
		document.querySelectorAll('#nodes tbody tr').length === 3 &&
		document.querySelectorAll('#nodes tbody tr.leader').length === 1 &&
		document.querySelectorAll('#nodes tbody tr.down').length === 0 &&
		document.querySelector('#nodes tbody tr.leader').dataset.node === %q`, leader.id), 30*time.Second)
	// A few refreshes so the sparklines have points.
	waitFor("sparklines with points", `Array.from(document.querySelectorAll('#nodes svg.spark polyline')).every(p => p.getAttribute('points').split(' ').length >= 3)`, 30*time.Second)
	shot("console-1-cluster.png")

	// 2. Create a key through the page; read it with the client.
	const key = "boards/kitchen/config"
	const created = `{"sensor":"temp","interval_s":30}`
	waitFor("the page is writable", `!document.body.classList.contains('ro')`, 10*time.Second)
	do(`document.getElementById('new').click()`)
	do(fmt.Sprintf(`document.getElementById('key').value = %q; document.getElementById('editor').value = %q; document.getElementById('save').click()`, key, created))
	waitFor("the page reports the key saved", `document.getElementById('status').textContent.startsWith('saved at index')`, 20*time.Second)
	got, err := kvc.Get(ctxTimeout(t, 10*time.Second), []byte(key))
	if err != nil || !got.Found || string(got.Entry.Value) != created {
		t.Fatalf("client read of the key the page created: %+v, %v", got, err)
	}
	do(`document.querySelector('input[name=view][value=json]').click()`)
	do(`document.getElementById('prefix').value = 'boards/kitchen/'; document.getElementById('go').click()`)
	waitFor("the folder lists the key", `Array.from(document.querySelectorAll('#entries li')).some(li => li.dataset.name === 'boards/kitchen/config')`, 20*time.Second)
	waitFor("the pretty-printed value", `document.getElementById('value').textContent.includes('"interval_s": 30')`, 10*time.Second)
	shot("console-2-created.png")

	// 3. Change it underneath with the client; the page's edit, made from
	// the mod index it read, must be refused and the conflict shown.
	const underneath = `{"sensor":"temp","interval_s":5}`
	if _, err := kvc.Put(ctxTimeout(t, 10*time.Second), []byte(key), []byte(underneath)); err != nil {
		t.Fatal(err)
	}
	do(`document.getElementById('edit').click()`)
	do(`document.getElementById('editor').value = '{"sensor":"temp","interval_s":60}'; document.getElementById('save').click()`)
	waitFor("the conflict is shown with the value that won", `document.getElementById('conflict').classList.contains('on') &&
		document.getElementById('conflict-value').textContent.includes('"interval_s": 5')`, 20*time.Second)
	got, err = kvc.Get(ctxTimeout(t, 10*time.Second), []byte(key))
	if err != nil || !got.Found || string(got.Entry.Value) != underneath {
		t.Fatalf("after the conflicting edit the client reads %+v, %v; want the value written underneath", got, err)
	}
	// The live view (a watch on the open prefix) shows the write made
	// underneath, at its index.
	waitFor("the live view shows the write made underneath", fmt.Sprintf(
		`Array.from(document.querySelectorAll('#events li')).some(li => li.textContent === '#%d PUT %s')`, got.Entry.ModIndex, key), 20*time.Second)
	// A lease with a key on it shows in the leases table with its TTL.
	lease, err := kvc.Grant(ctxTimeout(t, 10*time.Second), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvc.Put(ctxTimeout(t, 10*time.Second), []byte("boards/kitchen/alive"), []byte("1"), client.WithLease(lease.LeaseID)); err != nil {
		t.Fatal(err)
	}
	waitFor("the leases table shows the lease", fmt.Sprintf(`Array.from(document.querySelectorAll('#leases tbody tr')).some(tr =>
		tr.cells.length === 4 && tr.cells[0].textContent === '%d' && tr.cells[1].textContent === '60.0 s' && tr.cells[3].textContent === '1')`, lease.LeaseID), 20*time.Second)
	waitFor("the key list shows the key written under the lease", `Array.from(document.querySelectorAll('#entries li')).some(li => li.dataset.name === 'boards/kitchen/alive')`, 20*time.Second)
	shot("console-3-conflict.png")

	// 4. Kill a follower: its row turns red within a few seconds.
	killed := time.Now()
	follower.kill()
	waitFor("the killed follower's row is red", fmt.Sprintf(`(() => {
		const tr = document.querySelector('#nodes tbody tr[data-node=%q]');
		return !!tr && tr.classList.contains('down') && document.querySelectorAll('#nodes tbody tr.down').length === 1;
	})()`, follower.id), 20*time.Second)
	t.Logf("follower %s red in the page %v after the kill", follower.id, time.Since(killed).Round(10*time.Millisecond))
	shot("console-4-follower-down.png")
}
