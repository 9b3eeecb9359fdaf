package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// errTimeArg marks a --since or --until value that is not a time.
var errTimeArg = errors.New("invalid time")

// maxRelative bounds a relative time, so that now+d cannot overflow.
const maxRelative = 100 * 365 * 24 * time.Hour

// parseTimeArg parses a --since/--until value, relative to now:
//
//	2021-04-20T10:00:00Z, 2021-04-20T19:00:00.5+09:00   RFC 3339 (nanoseconds optional)
//	2021-04-20                                           midnight UTC of that day
//	-24h, -90m, +1h30m, -7d                              now plus a signed Go duration, or whole days
//	now                                                  now
//
// A relative time needs its sign, so that "24h" is not silently read as
// either the past or the future. The result is in UTC.
func parseTimeArg(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, fmt.Errorf("%w: empty", errTimeArg)
	case s == "now":
		return now.UTC(), nil
	case s[0] == '-' || s[0] == '+':
		d, err := parseRelative(s)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%w: want RFC 3339 (2021-04-20T10:00:00Z), a date (2021-04-20), a signed duration (-24h, -7d) or now", errTimeArg)
}

// parseRelative parses a signed duration: a Go duration or whole days.
func parseRelative(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s[1:], "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > uint64(maxRelative/(24*time.Hour)) {
			return 0, fmt.Errorf("%w: days must be a whole number up to %d (-7d)", errTimeArg, maxRelative/(24*time.Hour))
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s[1:]); err != nil || strings.ContainsAny(s[1:], "+-") {
			return 0, fmt.Errorf("%w: want a signed duration such as -24h or -7d", errTimeArg)
		}
	}
	if d > maxRelative {
		return 0, fmt.Errorf("%w: relative time beyond 100 years", errTimeArg)
	}
	if s[0] == '-' {
		d = -d
	}
	return d, nil
}
