//go:build !linux

package main

import "errors"

var errNoRSS = errors.New("peak RSS is read from /proc/self/status: Linux only")

func peakRSS() (int64, error)    { return 0, errNoRSS }
func currentRSS() (int64, error) { return 0, errNoRSS }
