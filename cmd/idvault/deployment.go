package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/idvault/idvault/kms"
)

// The deployment file describes one deployment for every command: where its
// data and key records are, which KEK wraps it, who acts, which verifier
// key to pin. It is a text file of "key = value" lines:
//
//	# idvault deployment, written by idvault init
//	store = s3://idv-data?endpoint=s3.eu-west-1.amazonaws.com&region=eu-west-1&tls=true
//	key-store = s3://idv-keys?endpoint=s3.eu-west-1.amazonaws.com&region=eu-west-1&tls=true
//	kek = local:/etc/idvault/kek
//	passphrase = file:/etc/idvault/kek.pass
//	verifier-key = idvault-audit+1a2b3c4d+AbCd...
//
// A line whose first non-blank character is '#' is a comment; blank lines
// are ignored. Everything after the first '=' of a line, trimmed, is the
// value: there are no quotes, no escapes and no trailing comments (a value
// holding " #" is refused, so that a comment is never read as part of it).
// Every key is known (settings), given at most once, with a value its
// command line flag would accept; paths are absolute. Nothing in it is a
// secret, and nothing secret may go in: the passphrase, PINs and S3 keys
// are named by where they come from (file:PATH, env:NAME), never inline.
//
// Precedence, for every setting: the command line flag, then its IDVAULT_*
// environment variable, then the file.

// errDeployment marks a deployment file (or an IDVAULT_* variable) that
// cannot be used. Its messages name the key and the line, never the value.
var errDeployment = errors.New("invalid deployment")

// maxDeploymentFile bounds the file: a dozen short lines.
const maxDeploymentFile = 64 << 10

// setting is one entry of the deployment description.
type setting struct {
	key string // in the file
	env string // the IDVAULT_* variable
	// flags are the command line flags the setting fills, in the commands
	// that have them (kek fills --kek and kek rewrap's --from).
	flags []string
	// storeBound settings describe the deployment's store: when a command
	// is given another store (flag or environment), the file's values of
	// these are not used, so that a key store or a verifier key of one
	// deployment is never paired with the data of another.
	storeBound bool
	// check validates a value (inFile: from the deployment file, where
	// paths must be absolute); its error never quotes the value.
	check func(v string, inFile bool) error
	// doc is the comment init writes above the line.
	doc string
}

// settings are every key the deployment file may hold, in the order init
// writes them.
var settings = []setting{
	{key: "store", env: "IDVAULT_STORE", flags: []string{"store"}, check: checkStoreSetting,
		doc: "the data store: payloads, indexes, the audit log (an object-locked bucket on S3)"},
	{key: "key-store", env: "IDVAULT_KEY_STORE", flags: []string{"key-store"}, storeBound: true, check: checkStoreSetting,
		doc: "the key records (an unversioned bucket on S3); absent: in the data store"},
	{key: "s3-credentials", env: "IDVAULT_S3_CREDENTIALS", flags: []string{"s3-credentials"}, check: checkCredentialSource,
		doc: "where the S3 keys come from: chain (environment, ~/.aws, IAM role) or file:PATH (AWS credentials file)"},
	{key: "kek", env: "IDVAULT_KEK", flags: []string{"kek", "from"}, check: checkKEKURI,
		doc: "the key-encryption key: local:PATH, aws-kms://..., pkcs11:..."},
	{key: "passphrase", env: "IDVAULT_PASSPHRASE_SOURCE", flags: []string{"passphrase"}, check: checkPassphraseSource,
		doc: "where a local: keyset's passphrase comes from: file:PATH, env:NAME or prompt (never the passphrase itself)"},
	{key: "actor", env: "IDVAULT_ACTOR", flags: []string{"as"}, check: checkActor,
		doc: "the principal recorded in the audit log for sweep, token rotate, kek rewrap"},
	{key: "verifier-key", env: "IDVAULT_VERIFIER_KEY", flags: []string{"verifier-key"}, storeBound: true, check: checkVerifierKeySetting,
		doc: "the audit verifier key, pinned (public)"},
	{key: "state", env: "IDVAULT_STATE", flags: []string{"state"}, storeBound: true, check: checkAbsPath,
		doc: "audit verify's state file"},
	{key: "witness", env: "IDVAULT_WITNESS", flags: []string{"witness", "out"}, storeBound: true, check: checkAbsPath,
		doc: "signed heads kept outside the store: written by audit checkpoint, checked by audit verify"},
}

// flagGroups are flags that name one thing two ways: when one is given on
// the command line, the deployment fills none of them.
var flagGroups = [][]string{
	{"kek", "kek-file"},
	{"passphrase", "passphrase-file"},
	{"verifier-key", "verifier-key-file"},
	{"key-store", "key-bucket"},
}

func settingByKey(key string) *setting {
	for i := range settings {
		if settings[i].key == key {
			return &settings[i]
		}
	}
	return nil
}

// deployment is a parsed deployment file.
type deployment struct {
	path   string            // where it was read from ("" when parsed from bytes)
	values map[string]string // key -> value
	lines  map[string]int    // key -> line number
	raw    []byte            // the file as read, for in-place updates
}

// parseDeployment parses a deployment file strictly. Errors wrap
// errDeployment, name the line and the key, and never quote a value.
func parseDeployment(b []byte) (*deployment, error) {
	if len(b) > maxDeploymentFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", errDeployment, maxDeploymentFile)
	}
	d := &deployment{values: map[string]string{}, lines: map[string]int{}, raw: b}
	b = bytes.TrimPrefix(b, []byte("\uFEFF")) // a BOM some editors write
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not UTF-8 text", errDeployment)
	}
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.ContainsFunc(line, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
			return nil, fmt.Errorf("%w: line %d: control character", errDeployment, n)
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: expected key = value", errDeployment, n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !validKeyName(k) {
			return nil, fmt.Errorf("%w: line %d: malformed key (want lower-case letters, digits and '-')", errDeployment, n)
		}
		s := settingByKey(k)
		if s == nil {
			if secretName(k) {
				return nil, fmt.Errorf("%w: line %d: key %q: the deployment file never holds a secret; name where it comes from instead (passphrase = file:PATH or env:NAME, s3-credentials = file:PATH or chain)", errDeployment, n, k)
			}
			return nil, fmt.Errorf("%w: line %d: unknown key %q (known: %s)", errDeployment, n, k, knownKeys())
		}
		if first, dup := d.lines[k]; dup {
			return nil, fmt.Errorf("%w: line %d: key %q given again (first on line %d)", errDeployment, n, k, first)
		}
		if v == "" {
			return nil, fmt.Errorf("%w: line %d: key %q has no value", errDeployment, n, k)
		}
		if strings.Contains(v, " #") || strings.Contains(v, "\t#") {
			return nil, fmt.Errorf("%w: line %d: key %q: a comment must be on a line of its own", errDeployment, n, k)
		}
		if err := s.check(v, true); err != nil {
			return nil, fmt.Errorf("%w: line %d: key %q: %v", errDeployment, n, k, err)
		}
		d.values[k], d.lines[k] = v, n
	}
	if _, ok := d.values["store"]; !ok {
		for _, s := range settings {
			if n, ok := d.lines[s.key]; ok && s.storeBound {
				return nil, fmt.Errorf("%w: line %d: key %q belongs to a store, but the file names no store", errDeployment, n, s.key)
			}
		}
	}
	return d, nil
}

// validKeyName: what a key may look like, and so what an error may quote.
func validKeyName(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// secretName reports keys that would hold a secret inline.
func secretName(k string) bool {
	for _, s := range []string{"secret", "password", "passwd", "token", "pin", "access-key", "access_key", "private"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func knownKeys() string {
	var ks []string
	for _, s := range settings {
		ks = append(ks, s.key)
	}
	return strings.Join(ks, ", ")
}

// readDeployment reads and parses the file at path.
func readDeployment(path string) (*deployment, error) {
	b, err := readSmallFile(path, maxDeploymentFile)
	if err != nil {
		return nil, fmt.Errorf("deployment file: %w", err)
	}
	d, err := parseDeployment(b)
	if err != nil {
		return nil, fmt.Errorf("deployment file %s: %w", path, err)
	}
	d.path = path
	return d, nil
}

// formatDeployment writes values as a new deployment file, in the order
// of settings, each with its comment.
func formatDeployment(values map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("# idvault deployment: read by every idvault command (flags and IDVAULT_*\n" +
		"# variables override it). No secret belongs here: name where each comes from.\n")
	for _, s := range settings {
		if v, ok := values[s.key]; ok && v != "" {
			fmt.Fprintf(&b, "\n# %s\n%s = %s\n", s.doc, s.key, v)
		}
	}
	return b.Bytes()
}

// updateDeployment returns raw with the values of changes replaced in place
// (comments and order kept) and the keys raw lacks appended. An empty value
// removes the key's line.
func updateDeployment(raw []byte, changes map[string]string) []byte {
	lines := strings.SplitAfter(string(raw), "\n")
	done := map[string]bool{}
	var out strings.Builder
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed != "" && trimmed[0] != '#' {
			if k, _, ok := strings.Cut(trimmed, "="); ok {
				k = strings.TrimSpace(k)
				if v, change := changes[k]; change {
					done[k] = true
					if v != "" {
						fmt.Fprintf(&out, "%s = %s\n", k, v)
					}
					continue
				}
			}
		}
		out.WriteString(line)
	}
	for _, s := range settings {
		if v := changes[s.key]; v != "" && !done[s.key] {
			if out.Len() > 0 && !strings.HasSuffix(out.String(), "\n") {
				out.WriteString("\n")
			}
			fmt.Fprintf(&out, "\n# %s\n%s = %s\n", s.doc, s.key, v)
		}
	}
	return []byte(out.String())
}

// Value checks. None quotes the value.

func checkStoreSetting(v string, inFile bool) error {
	s, err := parseStoreURL(v)
	if err != nil {
		return err
	}
	if inFile && s.Kind == kindFile && !filepath.IsAbs(v) && !strings.HasPrefix(v, "file:") {
		return errors.New("a directory must be an absolute path")
	}
	return nil
}

func checkAbsPath(v string, inFile bool) error {
	if inFile && !filepath.IsAbs(v) {
		return errors.New("must be an absolute path")
	}
	return nil
}

// checkKEKURI accepts the KEK URIs this CLI can open, without a PIN.
func checkKEKURI(v string, inFile bool) error {
	switch scheme := kms.URIScheme(v); scheme {
	case "local":
		p := strings.TrimPrefix(v, "local:")
		if p == "" || inFile && !filepath.IsAbs(p) {
			return errors.New("local: needs an absolute path (local:/etc/idvault/kek)")
		}
	case "pkcs11":
		if _, err := kms.ParsePKCS11URI(v); err != nil {
			return errors.New("not a usable pkcs11: URI (a PIN is named by pin-source, never given as pin-value)")
		}
	case "unknown":
		return errors.New("not a KEK URI (local:PATH, aws-kms://..., pkcs11:...)")
	}
	return nil
}

func checkPassphraseSource(v string, inFile bool) error {
	if _, err := kms.ParsePassphraseSource(v); err != nil {
		return errors.New("must name where the passphrase comes from: file:PATH, env:NAME or prompt (never the passphrase itself)")
	}
	if p, ok := strings.CutPrefix(v, "file:"); ok && inFile && !filepath.IsAbs(p) {
		return errors.New("file: needs an absolute path")
	}
	return nil
}

func checkActor(v string, _ bool) error {
	if strings.TrimSpace(v) == "" || len(v) > 256 || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return errors.New("must be 1-256 bytes of printable UTF-8")
	}
	return nil
}

func checkVerifierKeySetting(v string, _ bool) error {
	_, err := checkVerifierKey(v)
	return err
}

// s3CredentialSource says where S3 credentials come from.
type s3CredentialSource struct {
	file string // "" for the chain
}

func (s s3CredentialSource) String() string {
	if s.file == "" {
		return "chain"
	}
	return "file:" + s.file
}

func parseCredentialSource(v string) (s3CredentialSource, error) {
	if v == "" || v == "chain" {
		return s3CredentialSource{}, nil
	}
	if p, ok := strings.CutPrefix(v, "file:"); ok && p != "" {
		return s3CredentialSource{file: p}, nil
	}
	return s3CredentialSource{}, errors.New("must be chain or file:PATH (an AWS credentials file), never the keys themselves")
}

func checkCredentialSource(v string, inFile bool) error {
	s, err := parseCredentialSource(v)
	if err != nil {
		return err
	}
	if inFile && s.file != "" && !filepath.IsAbs(s.file) {
		return errors.New("file: needs an absolute path")
	}
	return nil
}

// defaultDeploymentPath is $XDG_CONFIG_HOME/idvault/idvault.conf, else
// $HOME/.config/idvault/idvault.conf; "" when neither is set.
func defaultDeploymentPath(env func(string) string) string {
	if d := env("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "idvault", "idvault.conf")
	}
	if h := env("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".config", "idvault", "idvault.conf")
	}
	return ""
}

// deploymentPath says which deployment file a command reads: --config,
// else $IDVAULT_CONFIG (both must exist), else the default path if it
// exists. explicit is false for the default path.
func (c *cli) deploymentPath(flagValue string) (path string, explicit bool) {
	if flagValue != "" {
		return flagValue, true
	}
	if p := c.env("IDVAULT_CONFIG"); p != "" {
		return p, true
	}
	return defaultDeploymentPath(c.env), false
}

// loadDeployment reads the deployment file the command names; nil when
// none is named and the default path does not exist. mustExist is false
// for init, which creates it.
func (c *cli) loadDeployment(flagValue string, mustExist bool) (*deployment, error) {
	path, explicit := c.deploymentPath(flagValue)
	if path == "" {
		return nil, nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && (!explicit || !mustExist) {
		return nil, nil
	}
	return readDeployment(path)
}

// origin says where a flag's value came from, for messages.
type origin struct {
	kind string // "flag", "env", "file"
	name string // the variable or the file
	line int
}

func (o origin) String() string {
	switch o.kind {
	case "env":
		return "$" + o.name
	case "file":
		return o.name + ":" + strconv.Itoa(o.line)
	}
	return "the command line"
}

// envValue returns the setting's value from the environment and the
// variable it came from ("" when unset). IDVAULT_KEK_FILE is the deprecated
// spelling of IDVAULT_KEK=local:PATH.
func (s *setting) envValue(env func(string) string) (v, name string) {
	if v := env(s.env); v != "" {
		return v, s.env
	}
	if s.key == "kek" {
		if v := env("IDVAULT_KEK_FILE"); v != "" {
			return "local:" + v, "IDVAULT_KEK_FILE"
		}
	}
	return "", ""
}

// inGroupSet reports whether flag name, or another spelling of it, was
// given on the command line.
func inGroupSet(name string, set map[string]bool) bool {
	if set[name] {
		return true
	}
	for _, g := range flagGroups {
		for _, n := range g {
			if n != name {
				continue
			}
			for _, m := range g {
				if set[m] {
					return true
				}
			}
		}
	}
	return false
}

// sameStore reports whether two store values name the same store.
func sameStore(a, b string) bool {
	sa, err := parseStoreURL(a)
	if err != nil {
		return false
	}
	sb, err := parseStoreURL(b)
	return err == nil && sa.String() == sb.String()
}

// applyDeployment fills every flag of fs the command line left unset from
// its IDVAULT_* variable, else from the deployment file. On failure it has
// reported the problem and returns the exit code.
func (c *cli) applyDeployment(fs *flag.FlagSet) int {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() != "" }) // --store "" is no store
	if c.cmd.positionalStore && len(c.args) > 0 {
		set["store"] = true
	}
	var cfg string
	if f := fs.Lookup("config"); f != nil {
		cfg = f.Value.String()
	}
	d, err := c.loadDeployment(cfg, !c.cmd.writesDeployment)
	if err != nil {
		return c.fail(err)
	}
	c.deploy = d
	c.origins = map[string]origin{}

	// A store given on the command line or in the environment, other than
	// the file's, leaves the file's store-bound settings out.
	dropBound := false
	if d != nil && d.values["store"] != "" && fs.Lookup("store") != nil {
		other := ""
		switch {
		case set["store"] && c.cmd.positionalStore && len(c.args) > 0:
			other = c.args[0]
		case set["store"]:
			other = fs.Lookup("store").Value.String()
		default:
			other = c.env("IDVAULT_STORE")
		}
		if other != "" && !sameStore(other, d.values["store"]) {
			dropBound = true
			var dropped []string
			for _, s := range settings {
				if _, ok := d.values[s.key]; ok && s.storeBound {
					dropped = append(dropped, s.key)
				}
			}
			if len(dropped) > 0 {
				fmt.Fprintf(c.stderr, "note: the store given is not the deployment file's (%s); its %s not used\n",
					d.path, strings.Join(dropped, ", ")+map[bool]string{true: " is", false: " are"}[len(dropped) == 1])
			}
		}
	}
	for i := range settings {
		s := &settings[i]
		for _, name := range s.flags {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			if inGroupSet(name, set) {
				c.origins[name] = origin{kind: "flag"}
				continue
			}
			if v, from := s.envValue(c.env); v != "" {
				if err := s.check(v, false); err != nil {
					return c.usageError(fmt.Sprintf("$%s: %v", from, err))
				}
				if err := f.Value.Set(v); err != nil {
					return c.usageError(fmt.Sprintf("$%s: %v", from, err))
				}
				c.origins[name] = origin{kind: "env", name: from}
				continue
			}
			if d == nil || s.storeBound && dropBound {
				continue
			}
			if v, ok := d.values[s.key]; ok {
				if err := f.Value.Set(v); err != nil {
					return c.fail(fmt.Errorf("deployment file %s: line %d: key %q: %v", d.path, d.lines[s.key], s.key, err))
				}
				c.origins[name] = origin{kind: "file", name: d.path, line: d.lines[s.key]}
			}
		}
	}
	if f := fs.Lookup("s3-credentials"); f != nil {
		src, err := parseCredentialSource(f.Value.String())
		if err != nil {
			return c.usageError("--s3-credentials: " + err.Error())
		}
		c.s3creds = src
	}
	return exitOK
}

// setDeploymentValues updates the deployment file d in place (kek rewrap
// moving it to its new KEK).
func setDeploymentValues(d *deployment, changes map[string]string) error {
	b := updateDeployment(d.raw, changes)
	if _, err := parseDeployment(b); err != nil {
		return err
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		return err
	}
	return writeFileAtomic(d.path, b, fi.Mode().Perm())
}
