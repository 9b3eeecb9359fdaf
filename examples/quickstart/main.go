// Command quickstart runs idvault's main job on the embedded default — a
// local directory store and a passphrase-protected keyset, no server, no
// account: it stores a sample ID image, hands it out once through a
// single-use token, refuses the replay, and verifies the audit log.
//
//	go run ./examples/quickstart
//
// The passphrase below is for this demo only. In production the KEK lives in
// a KMS (see package kms) or at least behind a passphrase you do not commit.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
)

// demoPassphrase protects the demo keyset. DEMO ONLY: anyone who reads this
// file can open the demo's keyset. Set IDVAULT_PASSPHRASE to use your own.
const demoPassphrase = "idvault-quickstart-demo-passphrase (not for production)"

func main() {
	dir := flag.String("dir", filepath.Join(os.TempDir(), "idvault-quickstart"), "directory for the demo store and keyset")
	flag.Parse()
	log.SetFlags(0)
	if err := run(context.Background(), *dir, os.Stdout); err != nil {
		log.Fatalf("quickstart: %v", err)
	}
}

func run(ctx context.Context, dir string, out io.Writer) error {
	step := func(n int, what, format string, args ...any) {
		fmt.Fprintf(out, "%d. %-8s %s\n", n, what, fmt.Sprintf(format, args...))
	}
	pass := []byte(demoPassphrase)
	if p := os.Getenv("IDVAULT_PASSPHRASE"); p != "" {
		pass = []byte(p)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	// 1. The key-encryption key: a local keyset, encrypted under the passphrase.
	kekPath := filepath.Join(dir, "kek")
	kek, err := kms.OpenLocal(kekPath, pass)
	created := false
	if errors.Is(err, os.ErrNotExist) {
		kek, err = kms.CreateLocal(kekPath, pass, kms.LocalOptions{})
		created = true
	}
	if err != nil {
		return fmt.Errorf("keyset: %w", err)
	}
	step(1, "keyset", "%s (%s, %s; demo passphrase: DEMO ONLY)", kekPath, kek.ID(), map[bool]string{true: "created", false: "opened"}[created])

	// 2. The store: a local directory (the embedded default).
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		return err
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
	if err != nil {
		return err
	}
	defer v.Close(ctx)
	step(2, "vault", "%s opened on %s", v.ID(), st.Dir())

	// 3. A member uploads an ID image.
	img := sampleLicence()
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "member-42", Kind: "drivers-license"})
	if err != nil {
		return err
	}
	step(3, "put", "sample licence, %d bytes %s → document %s, encrypted, expires %s", info.Size, info.ContentType, info.ID, info.Expires.Format(time.RFC3339))

	// 4. A reviewer is granted one look.
	g, err := v.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	if err != nil {
		return err
	}
	step(4, "grant", "single-use token for reviewer-7 (purpose age-check), valid until %s; the token itself is a secret and is not printed", g.ExpiresAt.Format(time.TimeOnly))

	// 5. The reviewer's browser fetches it over HTTP, on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: v.Handler(vault.HandlerOptions{
		Principal: func(r *http.Request) (string, error) { return "reviewer-7", nil }, // demo: your session auth here
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/" + g.Token
	status, body, ctype, err := fetch(url)
	if err != nil {
		return err
	}
	if status != 200 || !bytes.Equal(body, img) {
		return fmt.Errorf("redeem: status %d, %d bytes", status, len(body))
	}
	sum := sha256.Sum256(body)
	step(5, "redeem", "GET → %d %s, %d bytes, sha256 %x… matches the upload", status, ctype, len(body), sum[:8])

	// 6. The same URL again: spent.
	status, _, _, err = fetch(url)
	if err != nil {
		return err
	}
	if status != 404 {
		return fmt.Errorf("replay: status %d, want 404", status)
	}
	step(6, "replay", "same URL again → %d (the token was spent on first use)", status)

	// 7. Everything above is in the tamper-evident audit log.
	if err := v.Close(ctx); err != nil {
		return err
	}
	n := 0
	for _, err := range audit.Scan(ctx, st, audit.Filter{}) {
		if err != nil {
			return err
		}
		n++
	}
	rep, err := audit.Verify(ctx, st, v.AuditVerifierKey(), audit.VerifyOptions{})
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	step(7, "audit", "%d records in %d log(s); signatures and hash tree verified", n, len(rep.Logs))
	fmt.Fprintf(out, "\nVerify it yourself:  go run ./cmd/idvault audit verify --store file://%s\n", st.Dir())
	return nil
}

func fetch(url string) (int, []byte, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("Content-Type"), err
}

// sampleLicence draws a synthetic, obviously fake ID card as a JPEG.
func sampleLicence() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 856, 540))
	fill := func(x0, y0, x1, y1 int, c color.RGBA) {
		draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
	}
	fill(0, 0, 856, 540, color.RGBA{236, 240, 228, 255})
	fill(0, 0, 856, 90, color.RGBA{40, 90, 160, 255})       // header band
	fill(40, 130, 280, 450, color.RGBA{190, 190, 200, 255}) // photo
	fill(110, 190, 210, 300, color.RGBA{150, 150, 165, 255})
	for i := 0; i < 6; i++ { // text lines
		fill(320, 140+i*52, 320+300+(i*37)%200, 160+i*52, color.RGBA{60, 60, 70, 255})
	}
	fill(0, 500, 856, 540, color.RGBA{200, 60, 60, 255}) // "SPECIMEN" band
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 80}); err != nil {
		panic(err)
	}
	return b.Bytes()
}
