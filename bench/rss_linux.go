package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// peakRSS returns the process's peak resident set size (VmHWM), in bytes.
func peakRSS() (int64, error) { return statusKiB("VmHWM:") }

// currentRSS returns the process's resident set size now (VmRSS), in bytes.
func currentRSS() (int64, error) { return statusKiB("VmRSS:") }

// statusKiB reads one "Name:   1234 kB" line of /proc/self/status.
func statusKiB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 3 && string(f[0]) == field && string(f[2]) == "kB" {
			kib, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/status %s: %w", field, err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/self/status: no %s line", field)
}
