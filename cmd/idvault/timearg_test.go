package main

import (
	"errors"
	"testing"
	"time"
)

func TestParseTimeArg(t *testing.T) {
	now := time.Date(2021, 4, 28, 12, 0, 0, 0, time.FixedZone("JST", 9*3600))
	tests := []struct {
		in   string
		want time.Time // zero: an error is expected
	}{
		{"2021-04-20T10:00:00Z", time.Date(2021, 4, 20, 10, 0, 0, 0, time.UTC)},
		{"2021-04-20T19:00:00+09:00", time.Date(2021, 4, 20, 10, 0, 0, 0, time.UTC)},
		{"2021-04-20T10:00:00.123456789Z", time.Date(2021, 4, 20, 10, 0, 0, 123456789, time.UTC)},
		{"2021-04-20", time.Date(2021, 4, 20, 0, 0, 0, 0, time.UTC)},
		{"now", now.UTC()},
		{"-24h", now.Add(-24 * time.Hour).UTC()},
		{"-90m", now.Add(-90 * time.Minute).UTC()},
		{"+1h30m", now.Add(90 * time.Minute).UTC()},
		{"-7d", now.Add(-7 * 24 * time.Hour).UTC()},
		{"-0d", now.UTC()},
		{"-876000h", now.Add(-876000 * time.Hour).UTC()},
		{"24h", time.Time{}},
		{"7d", time.Time{}},
		{"-", time.Time{}},
		{"-d", time.Time{}},
		{"--1h", time.Time{}},
		{"-+1h", time.Time{}},
		{"-1h-1m", time.Time{}},
		{"-1.5d", time.Time{}},
		{"-36501d", time.Time{}},
		{"-876001h", time.Time{}},
		{"-9999999999999h", time.Time{}},
		{"2021-04-20 10:00:00", time.Time{}},
		{"2021-13-01", time.Time{}},
		{"yesterday", time.Time{}},
		{"", time.Time{}},
		{"1619000000", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTimeArg(tt.in, now)
			if tt.want.IsZero() {
				if !errors.Is(err, errTimeArg) {
					t.Fatalf("want errTimeArg, got %v, %v", got, err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Fatalf("got %v, %v; want %v in UTC", got, err, tt.want)
			}
		})
	}
}

func FuzzParseTimeArg(f *testing.F) {
	for _, s := range []string{"2021-04-20T10:00:00Z", "2021-04-20", "-24h", "+1h30m", "-7d", "now", "24h", "-", "-1e9h"} {
		f.Add(s)
	}
	now := time.Date(2021, 4, 28, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseTimeArg(in, now)
		if refused(t, err, errTimeArg) {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("%q: result not in UTC", in)
		}
		if in != "" && (in[0] == '-' || in[0] == '+') {
			if d := got.Sub(now); d > maxRelative || d < -maxRelative {
				t.Fatalf("%q: relative time %v beyond the bound", in, d)
			}
		}
	})
}
