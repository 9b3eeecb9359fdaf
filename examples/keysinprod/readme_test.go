package keysinprod

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms"
	"github.com/idvault/idvault/kms/awskms/localkms"
	"github.com/idvault/idvault/kms/pkcs11"
	"github.com/idvault/idvault/kms/pkcs11/softhsm"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

func TestMain(m *testing.M) {
	code := miniotest.Main(m)
	softhsm.Cleanup()
	os.Exit(code)
}

// TestKeysInProduction is docs/keys.md's section "Keys in production",
// between the BEGIN and END markers, verbatim (TestReadmeMatches checks).
func TestKeysInProduction(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	aws := localkms.Start(t)   // local-kms on 127.0.0.1, standing in for AWS KMS
	hsm := softhsm.NewToken(t) // a SoftHSM2 token with an AES-256 key, PIN in a file
	t.Setenv("IDVAULT_PASSPHRASE", "demo passphrase: not for production")
	// BEGIN README
	// 1. The quickstart: a local keyset file, its passphrase from a named source.
	_, err := kms.CreateLocal(filepath.Join(dir, "kek"), []byte(os.Getenv("IDVAULT_PASSPHRASE")), kms.LocalOptions{})
	check(err)
	openers := kms.OpenOptions{
		Passphrase: kms.PassphraseEnv("IDVAULT_PASSPHRASE"),
		Openers: []kms.Opener{
			awskms.NewOpener(awskms.Options{KMS: aws.KMS}), // or awskms.Options{} for real AWS credentials
			pkcs11.NewOpener(pkcs11.Options{}),             // PIN from the URI's pin-source
		},
	}
	local, err := kms.Open(ctx, "local:"+filepath.Join(dir, "kek"), openers)
	check(err)
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	check(err)
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: local})
	check(err)
	docs := map[string][]byte{}
	for i := range 20 {
		scan := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, fmt.Sprintf("scan %d", i)...)
		info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: fmt.Sprint("member-", i)})
		check(err)
		docs[info.ID] = scan
	}
	vaultID := v.ID()
	check(v.Close(ctx))

	// 2. Move to AWS KMS. Every instance first opens both KEKs
	//    (DecryptKEKs), then Rewrap re-wraps every data key and the
	//    vault's keyset; payloads are not touched.
	awsURI, err := aws.CreateKey(ctx) // "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/…"
	check(err)
	kmsKEK, err := kms.Open(ctx, awsURI, openers)
	check(err)
	v, err = vault.Open(ctx, vault.Config{Store: st, KEK: kmsKEK, Storage: vault.StorageConfig{DecryptKEKs: []kms.KEK{local}}})
	check(err)
	ops := vault.Actor{Principal: "alice@security", Reason: "CHG-1234 keys to KMS"}
	rep, err := v.Admin().Rewrap(ctx, local, kmsKEK, ops, vault.RewrapOptions{})
	check(err)
	fmt.Printf("to AWS KMS: %d rewrapped, %d remaining\n", rep.Rewrapped, rep.Remaining)
	check(v.Close(ctx))

	// 3. Move to the HSM, then disable the KMS key: nothing needs it.
	hsmKEK, err := kms.Open(ctx, hsm.URI, openers) // pkcs11:token=…;object=…?module-path=…&pin-source=file:…
	check(err)
	v, err = vault.Open(ctx, vault.Config{Store: st, KEK: hsmKEK, Storage: vault.StorageConfig{DecryptKEKs: []kms.KEK{kmsKEK}}})
	check(err)
	rep, err = v.Admin().Rewrap(ctx, kmsKEK, hsmKEK, ops, vault.RewrapOptions{})
	check(err)
	usage, err := v.Admin().KEKCounts(ctx) // what `idvault kek` prints
	check(err)
	fmt.Printf("to the HSM: %d rewrapped; key records per KEK: %v\n", rep.Rewrapped, usage.Records)
	check(v.Close(ctx))
	check(aws.SetEnabled(ctx, awsURI, false)) // aws kms disable-key

	// 4. The HSM key alone opens the same vault, and every document redeems.
	v, err = vault.Open(ctx, vault.Config{Store: st, KEK: hsmKEK})
	check(err)
	defer v.Close(ctx)
	for id, scan := range docs {
		g, err := v.Grant(ctx, id, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
		check(err)
		rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-7"})
		check(err)
		got, err := io.ReadAll(rc)
		check(err)
		rc.Close()
		if !bytes.Equal(got, scan) || v.ID() != vaultID {
			t.Fatalf("document %s or the vault ID did not survive", id)
		}
	}
	// END README
	if usage.Keyset != hsmKEK.ID() || len(usage.Records) != 1 || usage.Records[hsmKEK.ID()] != len(docs) {
		t.Fatalf("key records per KEK after the migration: %+v", usage)
	}
	// The KMS key is disabled: a vault that still needed it would fail.
	if _, err := kmsKEK.Decrypt(ctx, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("the disabled KMS key still answers: %v", err)
	}
}

// TestReadmeMatches checks that docs/keys.md's "Keys in production" code
// block is the body of TestKeysInProduction between its BEGIN and END
// markers, so the section is what the test runs.
func TestReadmeMatches(t *testing.T) {
	readme, err := os.ReadFile("../../docs/keys.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n## Keys in production\n")
	if !ok {
		t.Fatal(`docs/keys.md has no "## Keys in production" section`)
	}
	_, block, ok := strings.Cut(sec, "```go\n")
	if !ok {
		t.Fatal("no Go block in the section")
	}
	block, _, _ = strings.Cut(block, "```")
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "// BEGIN README\n")
	body, _, _ = strings.Cut(body, "\t// END README")
	var want strings.Builder
	for _, l := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(l, "\t"))
	}
	if strings.TrimSpace(block) != strings.TrimSpace(want.String()) || len(block) < 100 {
		t.Fatalf("the docs/keys.md block differs from TestKeysInProduction:\n--- docs/keys.md\n%s\n--- test\n%s", block, want.String())
	}
}
