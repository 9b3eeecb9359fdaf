// Package awskms opens KEKs held in AWS KMS (aws-kms://arn:… URIs) through
// Tink's AWS KMS client, for kms.Open. It lives in its own module so that a
// program using only vault, fsstore and kms downloads no AWS SDK.
//
// It uses tink-go-awskms/v3 (AWS SDK for Go v2; v2 of Tink's client is
// built on the SDK v1, out of support since July 2025). Every call is
// bounded by its context (Tink's AEADWithContext). Errors are classified: a ciphertext or key that
// does not authenticate (InvalidCiphertextException, IncorrectKeyException)
// is kms.ErrDecrypt; everything else — a transport error, a timeout,
// throttling, a disabled or pending-deletion key, access denied, the
// context ending — is kms.ErrUnavailable, which the vault never reads as
// tampering.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	tinkaws "github.com/tink-crypto/tink-go-awskms/v3/integration/awskms"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/idvault/idvault/kms"
)

// Prefix is the scheme of the URIs this package opens.
const Prefix = "aws-kms://"

// Options configure an Opener. The zero value uses the SDK's default
// credential chain and the region named in each key URI.
type Options struct {
	// KMS is the AWS SDK (v2) client calls go to (a *kms.Client). Nil: one
	// is made for the URI's region from the default configuration
	// (environment, shared config, instance role).
	KMS tinkaws.KMSAPI
	// Endpoint, when KMS is nil, overrides the KMS endpoint (a VPC
	// endpoint, or local-kms in tests: "http://127.0.0.1:PORT").
	Endpoint string
	// EncryptionContextName is the encryption-context key that carries
	// the associated data (Tink's choice, default tinkaws.AssociatedData).
	// Use tinkaws.LegacyAdditionalData only to read data that older Tink
	// clients wrapped.
	EncryptionContextName tinkaws.EncryptionContextName
}

// NewOpener returns a kms.Opener for aws-kms:// URIs.
func NewOpener(opts Options) kms.Opener { return opener{opts} }

type opener struct{ o Options }

func (opener) Supported(uri string) bool { return strings.HasPrefix(uri, Prefix) }

func (op opener) Open(ctx context.Context, uri string) (kms.KEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	api := op.o.KMS
	if api == nil {
		region, err := regionOf(uri)
		if err != nil {
			return nil, err
		}
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("aws-kms: loading the AWS configuration failed: %w", kms.ErrUnavailable)
		}
		endpoint := op.o.Endpoint
		api = awssdk.NewFromConfig(cfg, func(o *awssdk.Options) {
			if endpoint != "" {
				o.BaseEndpoint = aws.String(endpoint)
			}
		})
	}
	return New(ctx, uri, api, op.o.EncryptionContextName)
}

// New returns the KEK for one key URI ("aws-kms://arn:aws:kms:REGION:
// ACCOUNT:key/ID") on the given client. Its ID is the URI. ecName zero
// means tinkaws.AssociatedData.
func New(ctx context.Context, uri string, api tinkaws.KMSAPI, ecName tinkaws.EncryptionContextName) (kms.KEK, error) {
	if _, err := regionOf(uri); err != nil {
		return nil, err
	}
	if api == nil {
		return nil, errors.New("aws-kms: nil KMS client")
	}
	if ecName == 0 {
		ecName = tinkaws.AssociatedData
	}
	a, err := tinkaws.NewAEADWithContext(ctx, strings.TrimPrefix(uri, Prefix), tinkaws.WithKMS(api), tinkaws.WithEncryptionContextName(ecName))
	if err != nil {
		return nil, fmt.Errorf("aws-kms: the Tink client refused the key URI: %w", kms.ErrUnsupportedURI)
	}
	return &kek{uri: uri, a: a}, nil
}

// regionOf checks the URI's shape and returns its region.
func regionOf(uri string) (string, error) {
	arn, ok := strings.CutPrefix(uri, Prefix)
	parts := strings.SplitN(arn, ":", 6)
	if !ok || len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" || parts[3] == "" || parts[5] == "" {
		return "", fmt.Errorf("aws-kms: the key URI is not aws-kms://arn:PARTITION:kms:REGION:ACCOUNT:key/ID or alias/NAME: %w", kms.ErrUnsupportedURI)
	}
	return parts[3], nil
}

type kek struct {
	uri string
	a   tink.AEADWithContext // Tink's AWS KMS AEAD
}

// ID returns the key URI.
func (k *kek) ID() string { return k.uri }

// String names the key URI only.
func (k *kek) String() string { return "awskms.KEK(" + k.uri + ")" }

// Encrypt wraps plaintext under the KMS key, associatedData in the
// encryption context.
func (k *kek) Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	return k.call(ctx, "encrypt", k.a.EncryptWithContext, plaintext, associatedData)
}

// Decrypt unwraps ciphertext with the KMS key and associatedData.
func (k *kek) Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	return k.call(ctx, "decrypt", k.a.DecryptWithContext, ciphertext, associatedData)
}

// call runs op ("encrypt" or "decrypt", its name) unless ctx has ended, and
// classifies its error (only a decrypt can be an authentication failure).
func (k *kek) call(ctx context.Context, name string, op func(context.Context, []byte, []byte) ([]byte, error), in, associatedData []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("aws-kms: %s: %w", name, err)
	}
	out, err := op(ctx, in, associatedData)
	if err != nil {
		return nil, classify(ctx, name, err, name == "decrypt")
	}
	return out, nil
}

// authFailures are the AWS KMS error codes that are an authentication
// verdict on the ciphertext (or on the key asked to open it).
var authFailures = map[string]bool{
	"InvalidCiphertextException": true,
	"IncorrectKeyException":      true,
}

// classify maps an SDK error to ErrDecrypt (decrypt: the ciphertext does
// not authenticate) or ErrUnavailable (anything else). Only the AWS error
// code is kept: no message, which may quote request data.
func classify(ctx context.Context, op string, err error, decrypt bool) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("aws-kms: %s: %w: %w", op, kms.ErrUnavailable, cerr)
	}
	code := "transport"
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("aws-kms: %s: %w: %w", op, kms.ErrUnavailable, err)
	}
	if decrypt && authFailures[code] {
		return kms.ErrDecrypt
	}
	return fmt.Errorf("aws-kms: %s: %s: %w", op, sanitize(code), kms.ErrUnavailable)
}

func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
