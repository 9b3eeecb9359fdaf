package kms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

// grpcCode and grpcStatus have the shape of google.golang.org/grpc's
// codes.Code and *status.Status, which IsUnavailable finds by method.
type grpcCode uint32

type grpcStatus struct{ code grpcCode }

func (s *grpcStatus) Code() grpcCode { return s.code }

type grpcError struct{ s *grpcStatus }

func (e grpcError) Error() string           { return fmt.Sprintf("rpc error: code = %d", e.s.code) }
func (e grpcError) GRPCStatus() *grpcStatus { return e.s }
func grpcErr(code grpcCode) error           { return grpcError{&grpcStatus{code}} }

// httpError has an HTTP status, as SDK response errors do.
type httpError struct{ code int }

func (e httpError) Error() string       { return fmt.Sprintf("http %d", e.code) }
func (e httpError) HTTPStatusCode() int { return e.code }

// awsError has an AWS error code (smithy.APIError).
type awsError struct{ code string }

func (e awsError) Error() string     { return "api error " + e.code }
func (e awsError) ErrorCode() string { return e.code }

// vaultLikeError is how HashiCorp Vault's transit engine reports a
// ciphertext that does not authenticate: HTTP 400.
type vaultLikeError struct{}

func (vaultLikeError) Error() string {
	return "Error making API request. Code: 400. Errors: cipher: message authentication failed"
}
func (vaultLikeError) StatusCode() int { return 400 }

// failingAEAD is a Tink AEAD whose every call fails with err.
type failingAEAD struct{ err error }

func (failingAEAD) Encrypt(pt, ad []byte) ([]byte, error)   { return nil, errors.New("encrypt refused") }
func (a failingAEAD) Decrypt(ct, ad []byte) ([]byte, error) { return nil, a.err }

// TestFromAEADClassifiesOutages: a KMS that cannot answer is ErrUnavailable,
// never ErrDecrypt; a ciphertext the KMS refuses is ErrDecrypt, never
// ErrUnavailable. Before this change every Decrypt failure was ErrDecrypt.
func TestFromAEADClassifiesOutages(t *testing.T) {
	for _, c := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"grpc Unavailable", grpcErr(14), true},
		{"grpc DeadlineExceeded", grpcErr(4), true},
		{"grpc ResourceExhausted", grpcErr(8), true},
		{"grpc wrapped Unavailable", fmt.Errorf("gcpkms: %w", grpcErr(14)), true},
		{"grpc InvalidArgument (bad ciphertext)", grpcErr(3), false},
		{"net.OpError", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"deadline", fmt.Errorf("hcvault: %w", context.DeadlineExceeded), true},
		{"HTTP 429", httpError{429}, true},
		{"HTTP 503", httpError{503}, true},
		{"HTTP 400", httpError{400}, false},
		{"AWS throttling", awsError{"ThrottlingException"}, true},
		{"AWS disabled key", awsError{"DisabledException"}, true},
		{"AWS invalid ciphertext", awsError{"InvalidCiphertextException"}, false},
		{"message says throttled", errors.New("Rate exceeded: request throttled"), true},
		{"vault transit auth failure", vaultLikeError{}, false},
		{"vault sealed", errors.New("Error making API request. Code: 503. Errors: Vault is sealed"), true},
		{"tink auth failure", errors.New("aead_factory: decryption failed"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := FromAEAD("test://kek", failingAEAD{c.err})
			_, err := k.Decrypt(context.Background(), []byte("ct"), []byte("ad"))
			if got := errors.Is(err, ErrUnavailable); got != c.unavailable {
				t.Fatalf("errors.Is(err, ErrUnavailable) = %v, want %v (err: %v)", got, c.unavailable, err)
			}
			if got := errors.Is(err, ErrDecrypt); got == c.unavailable {
				t.Fatalf("errors.Is(err, ErrDecrypt) = %v, want %v (err: %v)", got, !c.unavailable, err)
			}
			if !c.unavailable && err != ErrDecrypt {
				t.Fatalf("an authentication failure must be exactly ErrDecrypt, got %v", err)
			}
		})
	}
	// Encrypt failures decide nothing: always unavailable.
	k := FromAEAD("test://kek", failingAEAD{})
	if _, err := k.Encrypt(context.Background(), []byte("pt"), nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Encrypt failure: %v, want ErrUnavailable", err)
	}
	// A context that is done before the call: unavailable and the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Decrypt(ctx, []byte("ct"), nil); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Decrypt with a done ctx: %v", err)
	}
}
