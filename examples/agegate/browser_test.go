package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idvault/idvault/internal/proctest"
	"github.com/idvault/idvault/vault"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the review page's screenshot to screenshot.png (for the README)")

// chromiumPath is where the browser test expects Chromium (Debian's
// "chromium" package).
const chromiumPath = "/usr/bin/chromium"

// TestBrowser drives the app in headless Chromium, as a member, a reviewer
// and an auditor would use it: upload → the reviewer's page shows the image
// decoded → the same image URL a second time fails → approve → the object
// is gone → the security page shows each step, verified. Screenshots go to
// $IDVAULT_ARTIFACTS (default: a temporary directory); the path is logged.
//
// It runs twice: on the embedded default (a directory), and on the S3
// deployment the README recommends (MinIO, an object-lock bucket for the
// audit log and payloads, an unversioned one for key records).
func TestBrowser(t *testing.T) {
	t.Run("filesystem", func(t *testing.T) { testBrowser(t, "fs", nil) })
	t.Run("s3-two-buckets", func(t *testing.T) { testBrowser(t, "s3", twoBuckets(t)) })
}

func testBrowser(t *testing.T, name string, cfg func(*config)) {
	if _, err := os.Stat(chromiumPath); err != nil {
		proctest.SkipUnlessCI(t, fmt.Sprintf("no Chromium at %s; install it with: apt-get install -y chromium", chromiumPath))
	}
	artifacts := os.Getenv("IDVAULT_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else {
		artifacts = filepath.Join(artifacts, "agegate", name)
		if err := os.MkdirAll(artifacts, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", artifacts)

	te := newTestEnv(t, envOptions{realClock: true, cfg: cfg})
	base := te.srv.URL // http://127.0.0.1:port
	imgPath := filepath.Join(t.TempDir(), "licence.png")
	img := licencePNG(t, 42)
	if err := os.WriteFile(imgPath, img, 0o600); err != nil {
		t.Fatal(err)
	}

	// The network is closed: without these flags Chromium stalls on
	// connection attempts of its own (updates, sync, QUIC probes).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	shot := func(name string) []byte {
		t.Helper()
		b, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(artifacts, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return b
	}
	signIn := func(id string) {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(base+"/login")); err != nil {
			t.Fatalf("open sign-in page: %v", err)
		}
		if _, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.ID("login-"+id))); err != nil {
			t.Fatalf("sign in as %s: %v", id, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// 1. The member uploads a real PNG through the form.
	signIn("member-alice")
	if err := chromedp.Do(bctx, chromedp.SetUploadFiles(chromedp.ID("document"), []string{imgPath})); err != nil {
		t.Fatalf("choose file: %v", err)
	}
	if resp, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.ID("upload"))); err != nil || resp.Status != 200 {
		t.Fatalf("upload: %v, %+v", err, resp)
	}
	if s := text("#status"); !strings.Contains(s, "Pending review") {
		t.Fatalf("member sees %q, want pending review", s)
	}
	shot("1-member-pending.png")

	// 2. The reviewer's page shows the image, actually decoded.
	signIn("reviewer-rita")
	width, err := chromedp.Run(bctx, chromedp.Poll[int](`(() => {
		const i = document.querySelector('img.doc');
		return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0;
	})()`, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil || width != 428 {
		t.Fatalf("image not decoded: naturalWidth %d, %v", width, err)
	}
	src, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('img.doc').src`))
	if err != nil || !strings.HasPrefix(src, base+"/img/idv1_") {
		t.Fatalf("image src: %v", err)
	}
	itemID, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('li.item').id.replace('item-', '')`))
	if err != nil || len(itemID) != 32 {
		t.Fatalf("item id %q: %v", itemID, err)
	}
	review := shot("2-review.png")
	if *updateScreenshot && name == "fs" {
		if err := os.WriteFile("screenshot.png", review, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote screenshot.png")
	}

	// 3. The same image URL a second time: refused.
	resp, err := chromedp.Run(bctx, chromedp.NavigateResponse(src))
	if err != nil {
		t.Fatalf("open the image URL again: %v", err)
	}
	if resp.Status != 404 {
		t.Fatalf("second fetch of the image URL: status %d, want 404", resp.Status)
	}
	shot("3-replay-404.png")

	// 4. Back to the queue (new links), record the birth date, approve.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/review")); err != nil {
		t.Fatal(err)
	}
	src2, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('img.doc').src`))
	if err != nil || src2 == src {
		t.Fatalf("reload did not mint a new link: %v", err)
	}
	// A token granted before the decision, to check that it dies with it.
	g, err := te.v.Grant(context.Background(), itemID, vault.Access{Principal: "reviewer-rita", Purpose: purpose})
	if err != nil {
		t.Fatal(err)
	}
	item := "#item-" + itemID
	if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS(item+` input[name="birthdate"]`), "1990-04-01")); err != nil {
		t.Fatalf("birth date: %v", err)
	}
	if _, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(item+" button.approve"))); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if s := text("#flash"); !strings.Contains(s, "Approved") {
		t.Fatalf("after approve: %q", s)
	}
	if s := text("#empty"); !strings.Contains(s, "Nothing to review") {
		t.Fatalf("queue after approve: %q", s)
	}
	shot("4-approved.png")
	if _, err := te.v.Grant(context.Background(), itemID, vault.Access{Principal: "reviewer-rita", Purpose: purpose}); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Grant after approval: %v, want ErrNotFound", err)
	}
	if _, _, err := te.v.Redeem(context.Background(), g.Token, vault.Requester{Principal: "reviewer-rita"}); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Redeem after approval: %v, want ErrNotFound", err)
	}

	// 5. The auditor sees every step, verified.
	signIn("auditor-ada")
	if s := text("#verify-status"); !strings.HasPrefix(s, "Verified:") {
		t.Fatalf("verification: %q", s)
	}
	events := text("#event-table")
	short := itemID[:8]
	for _, want := range []string{"put\tok", "grant\tok", "redeem\tok", "redeem\trefused\ttoken-replayed", "delete\tok\trequested"} {
		found := false
		for _, line := range strings.Split(events, "\n") {
			if strings.Contains(line, want) && strings.Contains(line, short) {
				found = true
			}
		}
		if !found {
			t.Errorf("audit table has no %q row for the document", want)
		}
	}
	bars, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart rect.bar').length`))
	if err != nil || bars == 0 {
		t.Errorf("volume chart has %d bars (%v)", bars, err)
	}
	shot("5-security.png")
}
