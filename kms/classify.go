package kms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"syscall"
)

// IsUnavailable reports whether err says that a key service could not be
// asked or did not answer (a transport failure, a timeout, throttling, a
// server error, a disabled or unreachable key), as opposed to a verdict on
// the ciphertext. It recognises, without importing any client library:
//
//   - ErrUnavailable itself, context.Canceled and context.DeadlineExceeded;
//   - net.Error values and connection errors (refused, reset, broken pipe);
//   - gRPC status errors (any error with a GRPCStatus method) of every code
//     except InvalidArgument, which KMSs use for a ciphertext that does not
//     authenticate;
//   - errors with an HTTP status (a StatusCode or HTTPStatusCode method)
//     of 408, 429 or 5xx;
//   - AWS-style error codes (an ErrorCode method) other than
//     InvalidCiphertextException and IncorrectKeyException;
//   - messages that name throttling, rate limits, timeouts or an
//     unavailable service.
//
// Adapters use it to decide between ErrUnavailable and ErrDecrypt.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, e) {
			return true
		}
	}
	if verdict, ok := classifyByMethods(err); ok {
		return verdict
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"throttl", "rate exceeded", "rate limit", "too many requests", "timeout", "timed out",
		"unavailable", "connection refused", "connection reset", "service error", "internal server error",
		"bad gateway", "gateway timeout", "temporarily", "try again",
		// HashiCorp Vault's API errors carry the status in the message.
		"code: 429", "code: 500", "code: 502", "code: 503", "code: 504",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// gRPC codes (google.golang.org/grpc/codes), copied so as not to depend on
// grpc: only InvalidArgument is a verdict on the ciphertext.
const grpcInvalidArgument = 3

// classifyByMethods walks err's chain looking for a gRPC status, an HTTP
// status or an AWS error code; ok is false when none is found.
func classifyByMethods(err error) (unavailable, ok bool) {
	for e := range walk(err) {
		v := reflect.ValueOf(e)
		if m := v.MethodByName("GRPCStatus"); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 {
			st := m.Call(nil)[0]
			if st.Kind() == reflect.Pointer && st.IsNil() {
				continue
			}
			if c := st.MethodByName("Code"); c.IsValid() && c.Type().NumIn() == 0 && c.Type().NumOut() == 1 {
				code := c.Call(nil)[0]
				if code.CanUint() {
					return code.Uint() != grpcInvalidArgument, true
				}
			}
		}
		for _, name := range []string{"HTTPStatusCode", "StatusCode"} {
			if m := v.MethodByName(name); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 {
				if s := m.Call(nil)[0]; s.CanInt() {
					code := s.Int()
					if code == 408 || code == 429 || code >= 500 {
						return true, true
					}
				}
			}
		}
		if m := v.MethodByName("ErrorCode"); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 {
			if s := m.Call(nil)[0]; s.Kind() == reflect.String {
				switch s.String() {
				case "InvalidCiphertextException", "IncorrectKeyException", "":
					return false, true
				}
				return true, true
			}
		}
	}
	return false, false
}

// walk yields err and everything it wraps, depth first.
func walk(err error) func(func(error) bool) {
	return func(yield func(error) bool) {
		var rec func(error) bool
		rec = func(e error) bool {
			if e == nil {
				return true
			}
			if !yield(e) {
				return false
			}
			switch u := e.(type) {
			case interface{ Unwrap() error }:
				return rec(u.Unwrap())
			case interface{ Unwrap() []error }:
				for _, x := range u.Unwrap() {
					if !rec(x) {
						return false
					}
				}
			}
			return true
		}
		rec(err)
	}
}

// unavailable wraps err so that it matches ErrUnavailable (and still
// matches err, for the context's errors). The KMS's message is kept: it
// names a transport failure, not a key.
func unavailable(op string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("kms: %s: %w", op, err)
	}
	return fmt.Errorf("kms: %s: %w: %w", op, ErrUnavailable, err)
}
