package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/idvault/idvault/vault"
)

// secretMark stands for a secret wherever a test puts one in a deployment
// file or a variable: no error may show it. Its capital letters keep it
// out of anything an error may quote (a key name is lower-case).
const secretMark = "zQ9-S3cr3t-Hunter2"

const validVK = "idvault-audit-test+bf254f3c+AT9fWAQksslBnAtV46hqnLUFWNel2QjXi4Ipz668LQkg"

func TestParseDeployment(t *testing.T) {
	if _, err := checkVerifierKey(validVK); err != nil {
		t.Fatalf("fixture verifier key: %v", err)
	}
	good := "\uFEFF# a comment\n\n  # indented comment\n" +
		"store = s3://idv-data?endpoint=127.0.0.1:9000&tls=false\r\n" +
		"key-store=s3://idv-keys?endpoint=127.0.0.1:9000&tls=false\n" +
		"\tkek = local:/etc/idvault/kek \n" +
		"passphrase = file:/etc/idvault/pass\n" +
		"actor = ops team 1\n" +
		"verifier-key = " + validVK + "\n" +
		"state = /var/lib/idvault/verify.state\n" +
		"witness = /srv/witness/heads\n" +
		"s3-credentials = file:/etc/idvault/s3.ini"
	d, err := parseDeployment([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"store":          "s3://idv-data?endpoint=127.0.0.1:9000&tls=false",
		"key-store":      "s3://idv-keys?endpoint=127.0.0.1:9000&tls=false",
		"kek":            "local:/etc/idvault/kek",
		"passphrase":     "file:/etc/idvault/pass",
		"actor":          "ops team 1",
		"verifier-key":   validVK,
		"state":          "/var/lib/idvault/verify.state",
		"witness":        "/srv/witness/heads",
		"s3-credentials": "file:/etc/idvault/s3.ini",
	}
	if len(d.values) != len(want) {
		t.Fatalf("values %v, want %v", d.values, want)
	}
	for k, v := range want {
		if d.values[k] != v {
			t.Errorf("%s = %q, want %q", k, d.values[k], v)
		}
	}
	if d.lines["kek"] != 6 {
		t.Errorf("kek on line %d, want 6", d.lines["kek"])
	}

	const S = secretMark
	bad := []struct {
		name, file string
		want       []string // in the message
	}{
		{"unknown key", "store = /srv\nstor = /srv", []string{"line 2", `"stor"`, "known:"}},
		{"repeated key", "store = /srv\n\nstore = /srv2", []string{"line 3", "first on line 1"}},
		{"no equals", "store /srv/" + S, []string{"line 1", "key = value"}},
		{"malformed key", "Store" + S + " = x", []string{"line 1", "malformed key"}},
		{"key with a space", "key store = /srv", []string{"malformed key"}},
		{"empty value", "store =", []string{`"store"`, "no value"}},
		{"trailing comment", "actor = ops # " + S, []string{`"actor"`, "own"}},
		{"secret key: password", "password = " + S, []string{`"password"`, "never holds a secret"}},
		{"secret key: s3 secret", "aws-secret-access-key = " + S, []string{"never holds a secret"}},
		{"secret key: pin", "hsm-pin = " + S, []string{"never holds a secret"}},
		{"inline passphrase", "passphrase = " + S, []string{`"passphrase"`, "file:PATH, env:NAME or prompt"}},
		{"inline passphrase with colon", "passphrase = x:" + S, []string{`"passphrase"`}},
		{"relative passphrase file", "passphrase = file:pass" + S, []string{"absolute"}},
		{"credentials in the store URL", "store = s3://AKIA:" + S + "@bucket", []string{`"store"`, "credentials do not belong"}},
		{"bad store scheme", "store = gs://" + S, []string{`"store"`, "unknown scheme"}},
		{"relative store", "store = data/" + S, []string{"absolute"}},
		{"bad kek", "kek = " + S, []string{`"kek"`, "not a KEK URI"}},
		{"relative kek", "kek = local:kek" + S, []string{"absolute"}},
		{"kek with a PIN", "kek = pkcs11:token=t;object=o?module-path=/m.so&pin-value=" + S, []string{`"kek"`, "pin-source"}},
		{"inline s3 keys", "s3-credentials = " + S, []string{`"s3-credentials"`, "chain or file:PATH"}},
		{"bad verifier key", "store = /srv\nverifier-key = " + S, []string{`"verifier-key"`, "verifier key"}},
		{"private signer key", "store = /srv\nverifier-key = PRIVATE+KEY+" + S, []string{"private signer key"}},
		{"relative state", "store = /srv\nstate = verify.state" + S, []string{"absolute"}},
		{"store-bound without store", "kek = local:/k\nkey-store = /keys", []string{"line 2", `"key-store"`, "names no store"}},
		{"control character", "actor = a\x1b[31m" + S, []string{"line 1", "control character"}},
		{"NUL", "actor = a\x00" + S, []string{"control character"}},
		{"not UTF-8", "actor = \xff\xfe" + S, []string{"not UTF-8"}},
		{"too large", "# " + strings.Repeat("x", maxDeploymentFile) + S, []string{"larger than"}},
		{"empty actor", "actor =  \t", []string{"no value"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDeployment([]byte(tt.file))
			if !errors.Is(err, errDeployment) {
				t.Fatalf("err = %v, want errDeployment", err)
			}
			msg := err.Error()
			if strings.Contains(msg, S) || strings.Contains(strings.ToLower(msg), strings.ToLower(S)) {
				t.Fatalf("the error quotes the secret: %s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

// TestFormatUpdateDeployment: what init writes reads back; an update keeps
// comments and unknown-to-the-update lines, replaces values in place,
// appends new keys and removes emptied ones.
func TestFormatUpdateDeployment(t *testing.T) {
	values := map[string]string{"store": "/srv/idvault", "kek": "local:/etc/idvault/kek", "verifier-key": validVK, "actor": "ops"}
	b := formatDeployment(values)
	d, err := parseDeployment(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for k, v := range values {
		if d.values[k] != v {
			t.Fatalf("%s = %q after the round trip, want %q", k, d.values[k], v)
		}
	}
	raw := []byte("# mine\nstore = /srv/idvault\n# the KEK\nkek = local:/old\nactor = ops\n")
	up := updateDeployment(raw, map[string]string{"kek": "local:/new", "passphrase": "env:NEW", "actor": ""})
	want := "# mine\nstore = /srv/idvault\n# the KEK\nkek = local:/new\n"
	if !strings.HasPrefix(string(up), want) || !strings.Contains(string(up), "\npassphrase = env:NEW\n") || strings.Contains(string(up), "actor") {
		t.Fatalf("updated:\n%s", up)
	}
	if d, err := parseDeployment(up); err != nil || d.values["kek"] != "local:/new" {
		t.Fatalf("updated file: %v %v", d, err)
	}
}

// FuzzParseDeployment: the parser never panics; what it accepts, written
// out again, parses to the same values; its errors never show a secret
// ("@@" in the input stands for one) and are short and printable.
func FuzzParseDeployment(f *testing.F) {
	for _, s := range []string{
		"store = /srv/idvault\nkek = local:/etc/idvault/kek\n",
		"store = s3://idv-data?endpoint=127.0.0.1:9000&tls=false\nkey-store = s3://idv-keys?endpoint=127.0.0.1:9000&tls=false\n",
		"passphrase = @@\n",
		"passphrase = file:@@\n",
		"password = @@\n",
		"store = s3://@@:@@@bucket\n",
		"store = /x\nverifier-key = @@\n",
		"actor = ops # @@\n",
		"@@\n",
		"@@ = @@\n",
		"kek = pkcs11:token=a;object=b?pin-value=@@\n",
		"s3-credentials = @@\n",
		"# comment @@\n\nactor = \xff@@\n",
		"store = /x\nstore = @@\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		in = bytes.ReplaceAll(in, []byte("@@"), []byte(secretMark))
		d, err := parseDeployment(in)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, secretMark) {
				t.Fatalf("error quotes the secret: %s", msg)
			}
			if len(msg) > 1024 || !utf8.ValidString(msg) || strings.ContainsFunc(msg, func(r rune) bool { return r < 0x20 }) {
				t.Fatalf("error not short and printable: %q", msg)
			}
			return
		}
		again, err := parseDeployment(formatDeployment(d.values))
		if err != nil {
			t.Fatalf("written out, it does not parse: %v", err)
		}
		if len(again.values) != len(d.values) {
			t.Fatalf("round trip: %v != %v", again.values, d.values)
		}
		for k, v := range d.values {
			if again.values[k] != v {
				t.Fatalf("round trip: %s = %q, was %q", k, again.values[k], v)
			}
		}
	})
}

// writeDeploymentFile writes a deployment file in a temporary directory.
func writeDeploymentFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "idvault.conf")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDeploymentPrecedence: each command reads the store from --store,
// else $IDVAULT_STORE, else the deployment file (named by --config, else
// $IDVAULT_CONFIG, else the default path under $XDG_CONFIG_HOME or $HOME);
// a bad value is an error naming where it came from, without the value.
func TestDeploymentPrecedence(t *testing.T) {
	a, _ := newVaultDir(t, "", 1)
	b, _ := newVaultDir(t, "", 2)
	c, _ := newVaultDir(t, "", 3)
	file := writeDeploymentFile(t, "store = "+a+"\n")
	counted := func(r result) string {
		t.Helper()
		if r.code != exitOK {
			t.Fatalf("kek: %v", r)
		}
		line, _, _ := strings.Cut(r.stdout, "\n")
		return strings.TrimSuffix(strings.TrimPrefix(line, "key records counted in file://"), " (the data store)")
	}
	if got := counted(runCLI(t, nil, "kek", "--config", file)); got != a {
		t.Errorf("file alone: counted in %s, want %s", got, a)
	}
	if got := counted(runCLI(t, map[string]string{"IDVAULT_CONFIG": file}, "kek")); got != a {
		t.Errorf("$IDVAULT_CONFIG: counted in %s, want %s", got, a)
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".config", "idvault"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".config", "idvault", "idvault.conf"), []byte("store = "+c+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := counted(runCLI(t, map[string]string{"HOME": home}, "kek")); got != c {
		t.Errorf("default path: counted in %s, want %s", got, c)
	}
	if got := counted(runCLI(t, map[string]string{"HOME": home, "IDVAULT_CONFIG": file}, "kek")); got != a {
		t.Errorf("$IDVAULT_CONFIG over the default path: counted in %s, want %s", got, a)
	}
	if got := counted(runCLI(t, map[string]string{"IDVAULT_STORE": b}, "kek", "--config", file)); got != b {
		t.Errorf("env over file: counted in %s, want %s", got, b)
	}
	if got := counted(runCLI(t, map[string]string{"IDVAULT_STORE": b}, "kek", "--config", file, "--store", c)); got != c {
		t.Errorf("flag over env and file: counted in %s, want %s", got, c)
	}
	// Audit commands read it too.
	if r := runCLI(t, nil, "audit", "verify", "--config", file); r.code != exitOK {
		t.Errorf("verify from the file: %v", r)
	}

	// A named file that is missing or bad stops the command.
	if r := runCLI(t, nil, "kek", "--config", filepath.Join(t.TempDir(), "none.conf")); r.code != exitUsage || r.stdout != "" {
		t.Errorf("missing --config: %v", r)
	}
	bad := writeDeploymentFile(t, "store = "+a+"\nsecret-key = "+secretMark+"\n")
	r := runCLI(t, nil, "kek", "--config", bad)
	if r.code != exitUsage || !strings.Contains(r.stderr, bad) || !strings.Contains(r.stderr, "line 2") || strings.Contains(r.stderr, secretMark) {
		t.Errorf("bad file: %v", r)
	}
	// A bad variable is named, its value is not shown.
	r = runCLI(t, map[string]string{"IDVAULT_STORE": "s3://user:" + secretMark + "@bucket"}, "kek", "--config", file)
	if r.code != exitUsage || !strings.Contains(r.stderr, "$IDVAULT_STORE") || strings.Contains(r.stderr, secretMark) {
		t.Errorf("bad $IDVAULT_STORE: %v", r)
	}
	r = runCLI(t, map[string]string{"IDVAULT_PASSPHRASE_SOURCE": secretMark, "IDVAULT_ACTOR": "ops"}, "sweep", "--config", file)
	if r.code != exitUsage || !strings.Contains(r.stderr, "$IDVAULT_PASSPHRASE_SOURCE") || strings.Contains(r.stderr, secretMark) {
		t.Errorf("a passphrase in $IDVAULT_PASSPHRASE_SOURCE: %v", r)
	}
	// --passphrase refuses a passphrase given inline, and does not echo it.
	r = runCLI(t, map[string]string{"IDVAULT_ACTOR": "ops"}, "sweep", "--config", file, "--kek", "local:/nonexistent", "--passphrase", secretMark)
	if r.code != exitUsage || strings.Contains(r.stderr, secretMark) {
		t.Errorf("--passphrase with a passphrase: %v", r)
	}
}

// TestDeploymentStoreBound: a store given on the command line or in the
// environment that is not the file's leaves the file's key store (and
// verifier key, state, witness) out, so that one deployment's key records
// are never paired with another's data.
func TestDeploymentStoreBound(t *testing.T) {
	keys := t.TempDir()
	a, _ := newVaultDir(t, keys, 2)
	b, _ := newVaultDir(t, "", 1)
	file := writeDeploymentFile(t, "store = "+a+"\nkey-store = "+keys+"\n")
	r := runCLI(t, nil, "kek", "--config", file)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "key records counted in file://"+keys+"\n") {
		t.Fatalf("from the file: %v", r)
	}
	for _, r := range []result{
		runCLI(t, nil, "kek", "--config", file, "--store", b),
		runCLI(t, map[string]string{"IDVAULT_STORE": b}, "kek", "--config", file),
	} {
		if r.code != exitOK || !strings.HasPrefix(r.stdout, "key records counted in file://"+b+" (the data store)\n") ||
			!strings.Contains(r.stderr, "key-store is not used") {
			t.Errorf("another store: %v", r)
		}
	}
	// The same store spelled otherwise keeps them.
	r = runCLI(t, nil, "kek", "--config", file, "--store", "file://"+a)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "key records counted in file://"+keys+"\n") || r.stderr != "" {
		t.Errorf("the file's store, as a URL: %v", r)
	}
	// The verifier key of another deployment is not applied either: verify
	// of store b falls back on the key b publishes (with its warning)
	// instead of failing against a's pinned key.
	fa := newFixture(t)
	fb := newFixture(t)
	file = writeDeploymentFile(t, "store = "+fa.dir+"\nverifier-key = "+fa.verifierKey+"\n")
	if r := runCLI(t, nil, "audit", "verify", "--config", file); r.code != exitOK || strings.Contains(r.stderr, "warning: the verifier key was read from the store") {
		t.Errorf("verify with the file's pinned key: %v", r)
	}
	if r := runCLI(t, nil, "audit", "verify", "--config", file, "--store", fb.dir); r.code != exitOK || !strings.Contains(r.stderr, "verifier-key is not used") {
		t.Errorf("verify of another store: %v", r)
	}
	// A pinned key that does not match fails: the file's key is used.
	file = writeDeploymentFile(t, "store = "+fa.dir+"\nverifier-key = "+fb.verifierKey+"\n")
	if r := runCLI(t, nil, "audit", "verify", "--config", file); r.code != exitFailed {
		t.Errorf("verify with a foreign pinned key: %v", r)
	}
}

// testPass is the passphrase of the keysets newVaultDir makes.
const testPass = "deployment-test-passphrase-31"

// newVaultDir makes a store directory holding a vault (its KEK a cheap
// local keyset, returned) with n documents, their key records in keysDir
// when it is not "".
func newVaultDir(t *testing.T, keysDir string, n int) (dir, kekFile string) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	kekFile, kek := testKEKFile(t, testPass)
	st := openFS(t, dir)
	cfg := vault.Config{Store: st, KEK: kek}
	if keysDir != "" {
		cfg.Storage.KeyStore = openFS(t, keysDir)
	}
	v := newTestVault(t, cfg)
	putDocs(t, v, testImage(500), n, "m", 0)
	if err := v.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return dir, kekFile
}
