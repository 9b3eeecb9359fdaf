package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrUnsupportedURI is returned by Open for a KEK URI that no opener in
// OpenOptions accepts (and that is not local:), or that is malformed.
var ErrUnsupportedURI = errors.New("kms: unsupported KEK URI")

// Opener opens the KEKs of one family of URIs: a cloud KMS client, an HSM.
// The nested modules kms/awskms and kms/pkcs11 provide Openers; any Tink
// KMS client becomes one through FromTinkClient. Implementations are safe
// for concurrent use.
type Opener interface {
	// Supported reports whether Open accepts uri. It does no I/O.
	Supported(uri string) bool
	// Open returns the KEK that uri names. It may check that the key is
	// reachable; errors never hold a secret.
	Open(ctx context.Context, uri string) (KEK, error)
}

// OpenOptions are the inputs of Open. The zero value opens nothing but
// local: URIs, and those only if Passphrase is set.
type OpenOptions struct {
	// Passphrase is where the passphrase of a local: keyset comes from
	// (PassphraseFile, PassphraseEnv, PassphrasePrompt). Required for
	// local: URIs, unused otherwise.
	Passphrase PassphraseSource
	// Openers open every other scheme, tried in order: the first whose
	// Supported reports true opens the URI. There is no global registry
	// and nothing registers itself on import: a program gets exactly the
	// KMS clients it passes here. Nil: local: only.
	Openers []Opener
}

// Open returns the KEK that uri names:
//
//   - local:PATH opens the passphrase-protected keyset file at PATH
//     (OpenLocal), with the passphrase read from opts.Passphrase;
//   - any other URI (aws-kms://…, gcp-kms://…, hcvault://…, pkcs11:…) is
//     opened by the first of opts.Openers that supports it.
//
// Errors name the URI's scheme, never the rest of it (a pkcs11: URI may
// carry a PIN) and never a passphrase. A URI no opener supports gives
// ErrUnsupportedURI.
func Open(ctx context.Context, uri string, opts OpenOptions) (KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kms: open: %w", err)
	}
	scheme := URIScheme(uri)
	if path, ok := strings.CutPrefix(uri, "local:"); ok {
		if path == "" {
			return nil, fmt.Errorf("kms: open local: empty path: %w", ErrUnsupportedURI)
		}
		if opts.Passphrase == nil {
			return nil, fmt.Errorf("kms: open local: no passphrase source: %w", ErrInvalidOptions)
		}
		pass, err := opts.Passphrase.Passphrase(ctx)
		if err != nil {
			return nil, fmt.Errorf("kms: open local: passphrase from %s: %w", opts.Passphrase, err)
		}
		defer clear(pass)
		l, err := OpenLocal(path, pass)
		if err != nil {
			return nil, fmt.Errorf("kms: open local: %w", err)
		}
		return l, nil
	}
	for _, o := range opts.Openers {
		if o == nil || !o.Supported(uri) {
			continue
		}
		k, err := o.Open(ctx, uri)
		if err != nil {
			if strings.HasPrefix(err.Error(), scheme+": ") {
				return nil, fmt.Errorf("kms: open: %w", err) // the opener named the scheme
			}
			return nil, fmt.Errorf("kms: open %s: %w", scheme, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("kms: open %s: no opener given for this scheme: %w", scheme, ErrUnsupportedURI)
}

// URIScheme returns the scheme of a KEK URI ("local", "aws-kms",
// "pkcs11"…), or "unknown" when uri has none. It is what error messages
// show of a URI.
func URIScheme(uri string) string {
	i := strings.IndexByte(uri, ':')
	if i <= 0 || i > 32 {
		return "unknown"
	}
	s := uri[:i]
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.') {
			return "unknown"
		}
	}
	return strings.ToLower(s)
}
