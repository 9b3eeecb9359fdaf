//go:build !linux

package kms

import "io"

// noEcho does nothing outside Linux: the prompt echoes.
func noEcho(io.Reader) func() { return func() {} }
