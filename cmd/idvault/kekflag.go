package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/idvault/idvault/kms"
)

// kekOpeners are the KMS and HSM openers this build links (openers.go,
// openers_cgo.go); local: needs none.
var kekOpeners []kms.Opener

// kekFlags are the flags that name a vault's KEK, shared by every command
// that opens a vault.
type kekFlags struct {
	uri        *string
	file       *string // deprecated: --kek-file PATH is --kek local:PATH
	passphrase *string
	passFile   *string // --passphrase-file F is --passphrase file:F
}

// addKEKFlags registers --kek, --passphrase and the older --kek-file and
// --passphrase-file on fs.
func addKEKFlags(fs *flag.FlagSet) *kekFlags {
	return &kekFlags{
		uri:        fs.String("kek", "", "the vault's key-encryption key `URI`: local:PATH for a keyset file, aws-kms://..., pkcs11:... (default $IDVAULT_KEK)"),
		file:       fs.String("kek-file", "", "deprecated: the local keyset `file`, same as --kek local:FILE (default $IDVAULT_KEK_FILE)"),
		passphrase: fs.String("passphrase", "", "where a local: keyset's passphrase comes from, a `SOURCE`: file:PATH, env:NAME or prompt (default $IDVAULT_PASSPHRASE_SOURCE, else env:IDVAULT_PASSPHRASE)"),
		passFile:   fs.String("passphrase-file", "", "read the keyset passphrase from this `file` (same as --passphrase file:FILE)"),
	}
}

// kekURI resolves the KEK URI from the flags and the environment; empty
// when none is given.
func (c *cli) kekURI(f *kekFlags) string {
	switch {
	case *f.uri != "":
		return *f.uri
	case *f.file != "":
		return "local:" + *f.file
	case c.env("IDVAULT_KEK") != "":
		return c.env("IDVAULT_KEK")
	case c.env("IDVAULT_KEK_FILE") != "":
		return "local:" + c.env("IDVAULT_KEK_FILE")
	}
	return ""
}

// passphraseSource resolves where a local: passphrase comes from.
func (c *cli) passphraseSource(f *kekFlags) (kms.PassphraseSource, error) {
	switch {
	case *f.passphrase != "":
		return c.parsePassphraseSource(*f.passphrase)
	case *f.passFile != "":
		return kms.PassphraseFile(*f.passFile), nil
	}
	return envPassphrase{c.env, "IDVAULT_PASSPHRASE"}, nil
}

// parsePassphraseSource is kms.ParsePassphraseSource, with env:NAME read
// through the CLI's environment.
func (c *cli) parsePassphraseSource(spec string) (kms.PassphraseSource, error) {
	src, err := kms.ParsePassphraseSource(spec)
	if err != nil {
		return nil, err
	}
	if name, ok := strings.CutPrefix(spec, "env:"); ok {
		return envPassphrase{c.env, name}, nil
	}
	return src, nil
}

// envPassphrase reads a variable through the CLI's env (tests inject it).
type envPassphrase struct {
	env  func(string) string
	name string
}

func (e envPassphrase) String() string { return "env " + e.name }

func (e envPassphrase) Passphrase(ctx context.Context) ([]byte, error) {
	v := e.env(e.name)
	if v == "" {
		return nil, kms.ErrNoPassphrase
	}
	return []byte(v), nil
}

// openKEKURI opens uri with the passphrase source and the linked openers.
func (c *cli) openKEKURI(ctx context.Context, uri string, src kms.PassphraseSource) (kms.KEK, error) {
	k, err := kms.Open(ctx, uri, kms.OpenOptions{Passphrase: src, Openers: kekOpeners})
	if errors.Is(err, kms.ErrUnsupportedURI) && kms.URIScheme(uri) != "local" {
		return nil, fmt.Errorf("%w (this idvault opens local:, aws-kms:// and, when built with cgo, pkcs11: KEKs)", err)
	}
	return k, err
}

// openKEK opens the KEK the flags name; usage is true when the flags are
// at fault (nothing given) rather than the KEK.
func (c *cli) openKEK(ctx context.Context, f *kekFlags) (k kms.KEK, usage bool, err error) {
	uri := c.kekURI(f)
	if uri == "" {
		return nil, true, errors.New("no KEK: pass --kek URI (or the deprecated --kek-file) or set IDVAULT_KEK")
	}
	src, err := c.passphraseSource(f)
	if err != nil {
		return nil, true, err
	}
	k, err = c.openKEKURI(ctx, uri, src)
	if errors.Is(err, kms.ErrNoPassphrase) {
		return nil, true, fmt.Errorf("no passphrase: pass --passphrase (file:PATH, env:NAME, prompt) or --passphrase-file, or set IDVAULT_PASSPHRASE: %w", err)
	}
	return k, false, err
}

// passphraseSpec is the passphrase source the flags name, as a spec
// (file:PATH, env:NAME, prompt), for the deployment file.
func passphraseSpec(f *kekFlags) string {
	switch {
	case *f.passphrase != "":
		return *f.passphrase
	case *f.passFile != "":
		return "file:" + *f.passFile
	}
	return "env:IDVAULT_PASSPHRASE"
}

// createKeyset creates a local keyset at path with the passphrase from
// src (asked twice when it is a prompt). On failure it has reported the
// problem and returns the exit code.
func (c *cli) createKeyset(ctx context.Context, path string, src kms.PassphraseSource) int {
	pass, err := src.Passphrase(ctx)
	if errors.Is(err, kms.ErrNoPassphrase) {
		return c.usageError(fmt.Sprintf("no passphrase for the new keyset from %s: pass --passphrase (file:PATH, env:NAME, prompt) or set IDVAULT_PASSPHRASE", src))
	}
	if err != nil {
		return c.fail(fmt.Errorf("passphrase from %s: %w", src, err))
	}
	defer clear(pass)
	if src.String() == "prompt" {
		again, err := kms.PassphrasePrompt("again: ", nil, nil).Passphrase(ctx)
		if err != nil {
			return c.fail(fmt.Errorf("passphrase: %w", err))
		}
		same := bytes.Equal(again, pass)
		clear(again)
		if !same {
			return c.fail(errors.New("the two passphrases differ; nothing created"))
		}
	}
	if len(pass) < minPassphrase {
		return c.usageError(fmt.Sprintf("the passphrase from %s is shorter than %d characters; a keyset file copied off the machine is then open to guessing", src, minPassphrase))
	}
	k, err := kms.CreateLocal(path, pass, keysetKDF)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "keyset %s: created, KEK ID %s; back it up, and keep its passphrase in a secret manager\n", path, k.ID())
	return exitOK
}

// keysetKDF is the derivation new keysets get: the zero value, kms's
// defaults (argon2id, 64 MiB, 3 passes). The tests make it cheap: under the
// race detector one default derivation takes seconds, and the end-to-end
// test opens its keysets a dozen times.
var keysetKDF kms.LocalOptions

// minPassphrase is the shortest passphrase a new keyset accepts.
const minPassphrase = 12
