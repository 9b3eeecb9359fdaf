package kms

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/tink-crypto/tink-go/v2/core/registry"
)

// ErrNoPassphrase is returned by a PassphraseSource that found none: an
// unset or empty environment variable, an empty file, an empty answer.
var ErrNoPassphrase = errors.New("kms: no passphrase")

// maxPassphrase bounds what a source reads (a passphrase, a PIN).
const maxPassphrase = 4096

// PassphraseSource is a named place a passphrase or PIN is read from. Its
// String names the place ("file /etc/idvault/pass", "env IDVAULT_PASSPHRASE",
// "prompt"), never the secret, so errors can say where it was looked for.
type PassphraseSource interface {
	// Passphrase returns a fresh copy of the secret; the caller clears it.
	Passphrase(ctx context.Context) ([]byte, error)
	String() string
}

// PassphraseFile reads the passphrase from a file: its first line, without
// the line ending. The file should be mode 0400 or 0600.
func PassphraseFile(path string) PassphraseSource { return fileSource(path) }

type fileSource string

func (f fileSource) String() string { return "file " + string(f) }

func (f fileSource) Passphrase(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fh, err := os.Open(string(f))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return firstLine(fh)
}

// PassphraseEnv reads the passphrase from the environment variable name.
func PassphraseEnv(name string) PassphraseSource { return envSource(name) }

type envSource string

func (e envSource) String() string { return "env " + string(e) }

func (e envSource) Passphrase(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v := os.Getenv(string(e))
	if v == "" {
		return nil, ErrNoPassphrase
	}
	if len(v) > maxPassphrase {
		return nil, fmt.Errorf("kms: passphrase over %d bytes", maxPassphrase)
	}
	return []byte(v), nil
}

// PassphrasePrompt writes prompt to out and reads one line from in. When in
// is a terminal (Linux), echo is turned off while the line is typed. A nil
// in or out means os.Stdin or os.Stderr. The answer is read once and then
// reused, so that opening two keysets with one prompt asks once; the
// source keeps it in memory until the process ends.
func PassphrasePrompt(prompt string, in io.Reader, out io.Writer) PassphraseSource {
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stderr
	}
	return &promptSource{prompt: prompt, in: in, out: out}
}

type promptSource struct {
	prompt string
	in     io.Reader
	out    io.Writer

	mu  sync.Mutex
	got []byte
}

func (p *promptSource) String() string { return "prompt" }

func (p *promptSource) Passphrase(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.got == nil {
		fmt.Fprint(p.out, p.prompt)
		restore := noEcho(p.in)
		b, err := firstLine(p.in)
		restore()
		fmt.Fprintln(p.out)
		if err != nil {
			return nil, err
		}
		p.got = b
	}
	return append([]byte(nil), p.got...), nil
}

// firstLine reads up to the first newline, bounded, without the line end.
func firstLine(r io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxPassphrase+2), 64)
	var b []byte
	for {
		c, err := br.ReadByte()
		if err == io.EOF || c == '\n' {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(b) >= maxPassphrase {
			clear(b)
			return nil, fmt.Errorf("kms: passphrase over %d bytes", maxPassphrase)
		}
		b = append(b, c)
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) == 0 {
		return nil, ErrNoPassphrase
	}
	return b, nil
}

// ParsePassphraseSource parses a source named on a command line:
// "file:PATH", "env:NAME" or "prompt" (on the controlling terminal,
// os.Stdin and os.Stderr). It is how --passphrase and --pin flags name
// where a secret comes from without carrying the secret itself.
func ParsePassphraseSource(spec string) (PassphraseSource, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case kind == "file" && arg != "":
		return PassphraseFile(arg), nil
	case kind == "env" && validEnvName(arg):
		return PassphraseEnv(arg), nil
	case spec == "prompt":
		return PassphrasePrompt("passphrase: ", nil, nil), nil
	}
	return nil, fmt.Errorf("kms: passphrase source must be file:PATH, env:NAME or prompt: %w", ErrInvalidOptions)
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// FromTinkClient makes an Opener of a Tink KMS client (GCP, HashiCorp
// Vault, AWS, or any other registry.KMSClient): Open calls GetAEAD and
// wraps the AEAD with FromAEAD, the URI being the KEK's ID.
func FromTinkClient(c registry.KMSClient) Opener {
	if c == nil {
		panic("kms: FromTinkClient with nil client")
	}
	return tinkOpener{c}
}

type tinkOpener struct{ c registry.KMSClient }

func (t tinkOpener) Supported(uri string) bool { return t.c.Supported(uri) }

func (t tinkOpener) Open(ctx context.Context, uri string) (KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := t.c.GetAEAD(uri)
	if err != nil {
		// Tink's messages may quote the URI; the scheme is named by Open.
		return nil, errors.New("the KMS client refused the key URI")
	}
	return FromAEAD(uri, a), nil
}
