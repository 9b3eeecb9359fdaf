package main

import (
	"slices"
	"strings"
	"testing"
)

func TestHelpForEveryCommand(t *testing.T) {
	for _, cmd := range commands {
		words := strings.Fields(cmd.path)
		fs, _ := newFlagSet(cmd)
		hasStore := fs.Lookup("store") != nil // every command but version
		invocations := [][]string{
			append(append([]string{}, words...), "-h"),
			append(append([]string{}, words...), "--help"),
			append(append([]string{}, words...), "-help"),
			append([]string{"help"}, words...),
		}
		wants := []string{"Usage: idvault " + cmd.path, "Example", "Flags:"}
		if hasStore {
			invocations = append(invocations, append(append([]string{}, words...), "--store", "/x", "-h"))
			wants = append(wants, "idvault "+cmd.path+" ", "-store")
		}
		for _, args := range invocations {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := runCLI(t, nil, args...)
				if r.code != exitOK {
					t.Fatalf("want exit 0, got %v", r)
				}
				if _, ex, _ := strings.Cut(r.stdout, "Example"); !strings.Contains(ex, "idvault "+cmd.path) {
					t.Errorf("the example does not run idvault %s:\n%s", cmd.path, r.stdout)
				}
				for _, want := range wants {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("help lacks %q:\n%s", want, r.stdout)
					}
				}
				if r.stderr != "" {
					t.Errorf("help wrote to stderr:\n%s", r.stderr)
				}
			})
		}
	}
}

func TestCommandList(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		toStdout bool
	}{
		{nil, exitUsage, false},
		{[]string{"help"}, exitOK, true},
		{[]string{"-h"}, exitOK, true},
		{[]string{"--help"}, exitOK, true},
		{[]string{"audit"}, exitUsage, false},
		{[]string{"audit", "-h"}, exitOK, true},
		{[]string{"audit", "help"}, exitOK, true},
		{[]string{"help", "audit"}, exitOK, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if r.code != tt.code {
				t.Fatalf("want exit %d, got %v", tt.code, r)
			}
			out := r.stderr
			if tt.toStdout {
				out = r.stdout
			}
			group := slices.Contains(tt.args, "audit")
			for _, cmd := range commands {
				if group && !strings.HasPrefix(cmd.path, "audit ") {
					continue // a group lists its own commands only
				}
				if !strings.Contains(out, cmd.path) || !strings.Contains(out, cmd.summary) {
					t.Errorf("command list lacks %q:\n%s", cmd.path, out)
				}
			}
			if !strings.Contains(out, "Run \"idvault ") {
				t.Errorf("no pointer to per-command help:\n%s", out)
			}
		})
	}
}

// TestUsageErrors: every malformed invocation exits 2 with a message on
// stderr and nothing on stdout, before touching any store.
func TestUsageErrors(t *testing.T) {
	store := t.TempDir()
	tests := [][]string{
		{"nope"},
		{"help", "nope"},
		{"audit", "nope"},
		{"audit", "verify", "--nope"},
		{"audit", "verify", "--store", store, "extra"},
		{"audit", "verify"}, // no store
		{"audit", "verify", "--store", "gs://bucket"},
		{"audit", "verify", "--store"},
		{"audit", "query", "--store", store, "--format", "xml"},
		{"audit", "query", "--store", store, "--limit", "-1"},
		{"audit", "query", "--store", store, "--limit", "ten"},
		{"audit", "query", "--store", store, "--since", "yesterday"},
		{"audit", "query", "--store", store, "--until", "24h"},
		{"audit", "query", "--store", store, "--since", "2021-04-21", "--until", "2021-04-20"},
		{"audit", "query", "--store", store, "--since", "2021-04-20", "--until", "2021-04-20"},
		{"audit", "query", "--store", store, "--event", "Grant"},
		{"audit", "query", "--store", store, "--outcome", "maybe"},
		{"audit", "query", "--store", store, "--object", "not-hex"},
		{"audit", "query", "--store", store, "--log", "../x"},
		{"audit", "query", "--store", store, "x"},
		{"audit", "stats", "--store", store, "--format", "csv"},
		{"audit", "stats", "--store", store, "--limit", "3"},
		{"audit", "stats", "--since", "-1h"},                                        // no store
		{"audit", "stats", "--store", "s3://bucket?endpoint=127.0.0.1:1&tls=false"}, // no credentials
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runCLI(t, nil, args...)
			if r.code != exitUsage {
				t.Fatalf("want exit 2, got %v", r)
			}
			if r.stderr == "" {
				t.Fatal("no message on stderr")
			}
			if r.stdout != "" {
				t.Fatalf("stdout not empty:\n%s", r.stdout)
			}
		})
	}
}
