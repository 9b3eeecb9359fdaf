package kms

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The golden keyset file was made once by TestWriteGolden and is frozen: if
// the current code cannot open it or decrypt its vectors, the file format
// changed. Bump fileVersion (and keep reading version 1) instead of
// regenerating it.
const (
	goldenKeyset  = "testdata/local-v1.keyset"
	goldenVectors = "testdata/local-v1.vectors"
	goldenID      = "local:18fd7f2caa3a401e" // frozen; see TestGoldenLocalV1
)

var (
	goldenPassphrase = []byte("idvault golden passphrase v1")
	goldenOpts       = LocalOptions{Time: 1, MemoryKiB: 64, Threads: 1}
	goldenPlaintext  = []byte("idvault golden 32-byte data key!")
	goldenAD         = []byte("idvault golden associated data")
)

var writeGolden = flag.Bool("kms.write-golden", false,
	"create the golden keyset and vectors in testdata (refuses to overwrite)")

// TestWriteGolden creates the golden files. It runs only with
// -kms.write-golden and, through CreateLocal, never overwrites them.
func TestWriteGolden(t *testing.T) {
	if !*writeGolden {
		t.Skip("run with -kms.write-golden to create the golden files")
	}
	l, err := CreateLocal(goldenKeyset, goldenPassphrase, goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# made by TestWriteGolden; frozen, do not regenerate\n")
	fmt.Fprintf(&b, "id %s\n", l.ID())
	fmt.Fprintf(&b, "before-rotate %x\n", mustEncrypt(t, l, goldenPlaintext, goldenAD))
	if err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "after-rotate %x\n", mustEncrypt(t, l, goldenPlaintext, goldenAD))
	f, err := os.OpenFile(goldenVectors, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readGoldenVectors(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(goldenVectors)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad vector line %q", line)
		}
		v[name] = val
	}
	return v
}

func TestGoldenLocalV1(t *testing.T) {
	if *writeGolden {
		t.Skip("writing golden files")
	}
	data, err := os.ReadFile(goldenKeyset)
	if err != nil {
		t.Fatal(err)
	}
	// Copy: OpenLocal of the real path is fine, but Rotate must never touch it.
	path := filepath.Join(t.TempDir(), "golden.keyset")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLocal(path, goldenPassphrase)
	if err != nil {
		t.Fatalf("OpenLocal(golden): %v", err)
	}
	vec := readGoldenVectors(t)
	if l.ID() != goldenID || vec["id"] != goldenID {
		t.Fatalf("ID = %q, vectors say %q, frozen %q", l.ID(), vec["id"], goldenID)
	}
	if n := l.state.Load().handle.Len(); n != 2 {
		t.Fatalf("golden keyset has %d keys, want 2", n)
	}
	for _, name := range []string{"before-rotate", "after-rotate"} {
		ct, err := hex.DecodeString(vec[name])
		if err != nil || len(ct) == 0 {
			t.Fatalf("vector %s: %v", name, err)
		}
		pt, err := l.Decrypt(context.Background(), ct, goldenAD)
		if err != nil {
			t.Fatalf("Decrypt(%s): %v", name, err)
		}
		if !bytes.Equal(pt, goldenPlaintext) {
			t.Fatalf("Decrypt(%s): wrong plaintext", name)
		}
		if _, err := l.Decrypt(context.Background(), ct, goldenPlaintext); err == nil {
			t.Fatalf("Decrypt(%s) with wrong AD succeeded", name)
		}
	}
	if _, err := OpenLocal(path, []byte("wrong")); err == nil {
		t.Fatal("golden opened with a wrong passphrase")
	}

	// Parsing and re-encoding gives back the same bytes.
	hdr, header, body, err := parseFile(data, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hdr.marshal(), header) || !bytes.Equal(encodeFile(header, body), data) {
		t.Fatal("parse then encode does not give back the golden file")
	}

	// A file written today with the same options has the same fixed header
	// layout (everything before the random salt): the writer has not drifted
	// from version 1 either.
	fresh, err := CreateLocal(filepath.Join(t.TempDir(), "fresh.keyset"), goldenPassphrase, goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	freshHeader := fresh.hdr.marshal()
	fixed := len(header) - len(hdr.salt) - keysetIDSize
	if len(freshHeader) != len(header) || !bytes.Equal(freshHeader[:fixed], header[:fixed]) {
		t.Fatalf("new files' header layout differs from version 1:\n got %x\nwant %x", freshHeader[:fixed], header[:fixed])
	}
}
