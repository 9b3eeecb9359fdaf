// Package pkcs11 opens KEKs held in an HSM through PKCS#11 (RFC 7512
// pkcs11: URIs), for kms.Open. It needs cgo and lives in its own module,
// so that a program using only vault, fsstore and kms builds with
// CGO_ENABLED=0 and links no PKCS#11 library.
//
// The KEK is an AES key (CKK_AES, 128 to 256 bits) on the token, which
// never leaves it. Data keys are sealed with CKM_AES_GCM (C_Encrypt, a
// random 96-bit IV, 128-bit tag, the associated data as GCM's AAD), not
// with CKM_AES_KEY_WRAP_PAD: data keys are not token objects, and GCM binds
// the associated data (object, vault, KEK ID) that key wrap cannot. A
// sealed data key is: version (1 byte, 1) | IV (12) | GCM output.
//
// Errors are classified: a GCM tag or length failure (CKR_ENCRYPTED_DATA_
// INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE, CKR_AEAD_DECRYPT_FAILED) is
// kms.ErrDecrypt; any other failure — a session or device error, a missing
// key, a PIN refused, the context ending — is kms.ErrUnavailable.
package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/idvault/idvault/kms"
)

// DefaultModule is Debian's SoftHSM2, used when neither Options.Module
// nor the URI's module-path names a library.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// ckrAEADDecryptFailed is CKR_AEAD_DECRYPT_FAILED (PKCS#11 3.0).
const ckrAEADDecryptFailed = 0x35

const (
	formatVersion = 1
	ivLen         = 12
	tagBits       = 128
)

// Options configure an Opener. The zero value reads the PIN from the
// URI's pin-source and loads DefaultModule unless the URI says otherwise.
type Options struct {
	// Module is the PKCS#11 library to load (overrides the URI's
	// module-path). Empty: the URI's module-path, else DefaultModule.
	Module string
	// PIN is where the user PIN comes from. Nil: the URI's pin-source
	// query attribute, parsed by kms.ParsePassphraseSource
	// ("file:PATH", "env:NAME"). A pin-value in the URI is refused.
	PIN kms.PassphraseSource
	// Sessions bounds the sessions opened per KEK (default 4): PKCS#11
	// sessions are used by one call at a time.
	Sessions int
}

// NewOpener returns a kms.Opener for pkcs11: URIs. Path attributes token
// (the token label) and object (the key's label) are required; the KEK's
// ID is the URI's canonical path part (kms.PKCS11URI.KeyID), so the module
// path and PIN source may change without changing it.
func NewOpener(opts Options) kms.Opener { return opener{opts} }

type opener struct{ o Options }

func (opener) Supported(uri string) bool { return len(uri) > 7 && uri[:7] == "pkcs11:" }

func (op opener) Open(ctx context.Context, uri string) (kms.KEK, error) {
	u, err := kms.ParsePKCS11URI(uri)
	if err != nil {
		return nil, err
	}
	token, object := u.Path["token"], u.Path["object"]
	if token == "" || object == "" {
		return nil, fmt.Errorf("pkcs11: the URI needs token= and object=: %w", kms.ErrUnsupportedURI)
	}
	module := op.o.Module
	if module == "" {
		module = u.Query["module-path"]
	}
	if module == "" {
		module = DefaultModule
	}
	pinSrc := op.o.PIN
	if pinSrc == nil {
		spec := u.Query["pin-source"]
		if spec == "" {
			return nil, fmt.Errorf("pkcs11: no PIN source (Options.PIN or pin-source=): %w", kms.ErrInvalidOptions)
		}
		if pinSrc, err = kms.ParsePassphraseSource(spec); err != nil {
			return nil, err
		}
	}
	pin, err := pinSrc.Passphrase(ctx)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: PIN from %s: %w", pinSrc, err)
	}
	defer clear(pin)
	m, err := loadModule(module)
	if err != nil {
		return nil, err
	}
	slot, err := findSlot(m, token)
	if err != nil {
		return nil, err
	}
	k := &kek{id: u.KeyID(), m: m, slot: slot, pin: string(pin), object: object}
	n := op.o.Sessions
	if n <= 0 {
		n = 4
	}
	k.pool = make(chan *sess, n)
	k.slots = make(chan struct{}, n)
	// Log in and find the key now, so a bad PIN or label fails Open.
	s, err := k.session()
	if err != nil {
		return nil, err
	}
	k.put(s)
	return k, nil
}

// modules are the loaded PKCS#11 libraries: a library is initialised once
// per process, however many KEKs use it.
var (
	modMu   sync.Mutex
	modules = map[string]*p11.Ctx{}
)

func loadModule(path string) (*p11.Ctx, error) {
	modMu.Lock()
	defer modMu.Unlock()
	if m := modules[path]; m != nil {
		return m, nil
	}
	m := p11.New(path)
	if m == nil {
		return nil, fmt.Errorf("pkcs11: cannot load the PKCS#11 library: %w", kms.ErrUnavailable)
	}
	if err := m.Initialize(); err != nil && !isCode(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		m.Destroy()
		return nil, fmt.Errorf("pkcs11: initialise: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	modules[path] = m
	return m, nil
}

func findSlot(m *p11.Ctx, label string) (uint, error) {
	slots, err := m.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11: slots: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	for _, s := range slots {
		ti, err := m.GetTokenInfo(s)
		if err == nil && ti.Label == label {
			return s, nil
		}
	}
	return 0, fmt.Errorf("pkcs11: no token with that label: %w", kms.ErrUnavailable)
}

func findKey(m *p11.Ctx, s p11.SessionHandle, label string) (p11.ObjectHandle, error) {
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	if err := m.FindObjectsInit(s, tmpl); err != nil {
		return 0, fmt.Errorf("pkcs11: find key: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	hs, _, err := m.FindObjects(s, 2)
	m.FindObjectsFinal(s)
	if err != nil {
		return 0, fmt.Errorf("pkcs11: find key: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	if len(hs) != 1 {
		return 0, fmt.Errorf("pkcs11: %d AES keys with that label on the token, want 1: %w", len(hs), kms.ErrUnavailable)
	}
	return hs[0], nil
}

type kek struct {
	id     string
	m      *p11.Ctx
	slot   uint
	pin    string
	object string // the key's label

	pool  chan *sess    // idle sessions
	slots chan struct{} // one per open session: the bound
}

// sess is a logged-in session and the key's handle as seen from it (found
// again on every new session, so a token reset is survived).
type sess struct {
	h   p11.SessionHandle
	key p11.ObjectHandle
}

// session takes an idle session or opens one (logging in), within the
// bound; the caller returns it with put, or drop when it failed.
func (k *kek) session() (*sess, error) {
	select {
	case s := <-k.pool:
		return s, nil
	default:
	}
	select {
	case s := <-k.pool:
		return s, nil
	case k.slots <- struct{}{}:
	}
	h, err := k.m.OpenSession(k.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		<-k.slots
		return nil, fmt.Errorf("pkcs11: open session: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	s := &sess{h: h}
	if err := k.m.Login(h, p11.CKU_USER, k.pin); err != nil && !isCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		k.drop(s)
		return nil, fmt.Errorf("pkcs11: login: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	if s.key, err = findKey(k.m, h, k.object); err != nil {
		k.drop(s)
		return nil, err
	}
	return s, nil
}

func (k *kek) put(s *sess) { k.pool <- s }

func (k *kek) drop(s *sess) {
	k.m.CloseSession(s.h)
	<-k.slots
}

// run does op on a session in its own goroutine, so that a hung token is
// bounded by ctx: the call is abandoned (its session is closed when it
// returns) and ErrUnavailable is returned at the deadline.
func (k *kek) run(ctx context.Context, op func(*sess) ([]byte, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := k.session()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		if ctx.Err() != nil { // the caller has gone: do not do the work
			k.put(s)
			ch <- result{nil, ctx.Err()}
			return
		}
		b, err := op(s)
		if err != nil && !authCode(err) && !isCode(err, p11.CKR_GENERAL_ERROR) {
			k.drop(s) // the session may be broken: do not reuse it
		} else {
			k.put(s)
		}
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("pkcs11: %w: %w", kms.ErrUnavailable, ctx.Err())
	}
}

// ID returns the URI's canonical path part.
func (k *kek) ID() string { return k.id }

// String names the key only.
func (k *kek) String() string { return "pkcs11.KEK(" + k.id + ")" }

// Encrypt seals plaintext with CKM_AES_GCM and associatedData as AAD.
func (k *kek) Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	iv := make([]byte, ivLen)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	ct, err := k.run(ctx, func(s *sess) ([]byte, error) { return k.encrypt(s, iv, plaintext, associatedData) })
	if err != nil {
		if errors.Is(err, kms.ErrUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("pkcs11: encrypt: %s: %w", codeName(err), kms.ErrUnavailable)
	}
	out := make([]byte, 0, 1+ivLen+len(ct))
	out = append(out, formatVersion)
	out = append(out, iv...)
	return append(out, ct...), nil
}

// Decrypt opens what Encrypt sealed, with the same associatedData.
func (k *kek) Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(ciphertext) < 1+ivLen+tagBits/8 || ciphertext[0] != formatVersion {
		return nil, kms.ErrDecrypt
	}
	iv, body := ciphertext[1:1+ivLen], ciphertext[1+ivLen:]
	pt, err := k.run(ctx, func(s *sess) ([]byte, error) {
		pt, err := k.decrypt(s, iv, body, associatedData)
		if isCode(err, p11.CKR_GENERAL_ERROR) {
			// SoftHSM2 (and some HSMs) report a GCM tag mismatch as
			// CKR_GENERAL_ERROR, which also means "the device failed".
			// Tell them apart with a known answer on the same session
			// and key: if the token seals and opens a probe, it works;
			// if the ciphertext then fails once more, the failure is
			// the ciphertext's. A device glitch would have to strike
			// twice, around a working probe, to pass for tampering.
			if !k.probe(s) {
				return nil, err
			}
			if pt, err = k.decrypt(s, iv, body, associatedData); isCode(err, p11.CKR_GENERAL_ERROR) {
				return nil, errAuth
			}
		}
		return pt, err
	})
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, kms.ErrUnavailable):
		return nil, err
	case err == errAuth, authCode(err):
		return nil, kms.ErrDecrypt
	}
	return nil, fmt.Errorf("pkcs11: decrypt: %s: %w", codeName(err), kms.ErrUnavailable)
}

var errAuth = errors.New("pkcs11: authentication failed")

func authCode(err error) bool {
	return isCode(err, p11.CKR_ENCRYPTED_DATA_INVALID) || isCode(err, p11.CKR_ENCRYPTED_DATA_LEN_RANGE) || isCode(err, ckrAEADDecryptFailed)
}

func (k *kek) encrypt(s *sess, iv, pt, ad []byte) ([]byte, error) {
	return k.gcm(s, iv, pt, ad, k.m.EncryptInit, k.m.Encrypt)
}

func (k *kek) decrypt(s *sess, iv, ct, ad []byte) ([]byte, error) {
	return k.gcm(s, iv, ct, ad, k.m.DecryptInit, k.m.Decrypt)
}

// gcm runs one AES-GCM operation (init, then the single-part call) on the
// session's key with iv and ad.
func (k *kek) gcm(s *sess, iv, in, ad []byte,
	initOp func(p11.SessionHandle, []*p11.Mechanism, p11.ObjectHandle) error,
	op func(p11.SessionHandle, []byte) ([]byte, error)) ([]byte, error) {
	params := p11.NewGCMParams(iv, ad, tagBits)
	defer params.Free()
	if err := initOp(s.h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, s.key); err != nil {
		return nil, err
	}
	return op(s.h, in)
}

// probe reports whether the token seals and opens a fixed message with
// the key on session s.
func (k *kek) probe(s *sess) bool {
	iv := make([]byte, ivLen)
	if _, err := rand.Read(iv); err != nil {
		return false
	}
	msg := []byte("idvault pkcs11 probe")
	ct, err := k.encrypt(s, iv, msg, []byte("probe"))
	if err != nil {
		return false
	}
	pt, err := k.decrypt(s, iv, ct, []byte("probe"))
	return err == nil && string(pt) == string(msg)
}

func isCode(err error, code uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == code
}

// codeName is the CKR_ name of a PKCS#11 error (no data, no secret).
func codeName(err error) string {
	var e p11.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return "error"
}
