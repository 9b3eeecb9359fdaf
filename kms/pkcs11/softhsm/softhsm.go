// Package softhsm gives tests a SoftHSM2 token (Debian's softhsm2) with an
// AES key on it, in a temporary directory: the token directory and its
// softhsm2.conf are made once per process, and SOFTHSM2_CONF points at
// them before the library is first initialised.
//
// The library is $SOFTHSM2_LIB or /usr/lib/softhsm/libsofthsm2.so. When it
// is missing, NewToken skips the test, except under CI=true where that is
// a failure (`make test` installs softhsm2 as root).
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/idvault/idvault/internal/proctest"
)

// Module returns the SoftHSM2 library path.
func Module() string {
	if p := os.Getenv("SOFTHSM2_LIB"); p != "" {
		return p
	}
	return "/usr/lib/softhsm/libsofthsm2.so"
}

// ErrNoLibrary: the SoftHSM2 library is not installed.
var ErrNoLibrary = errors.New("softhsm: library missing; install Debian's softhsm2 (apt-get install softhsm2) or set SOFTHSM2_LIB")

// Token is an initialised token holding one AES-256 key.
type Token struct {
	Label   string // token label
	Object  string // the AES key's label
	PINFile string // a file holding the user PIN (mode 0600)
	Module  string // library path
	// URI is the key's pkcs11: URI, with module-path and pin-source.
	URI string

	ctx  *p11.Ctx
	slot uint
	pin  string
}

var (
	setupOnce sync.Once
	setupErr  error
	baseDir   string
	mod       *p11.Ctx
	tokenMu   sync.Mutex
)

func setup() error {
	if _, err := os.Stat(Module()); err != nil {
		return ErrNoLibrary
	}
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		return err
	}
	baseDir = dir
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + filepath.Join(dir, "tokens") + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return err
	}
	mod = p11.New(Module())
	if mod == nil {
		return ErrNoLibrary
	}
	if err := mod.Initialize(); err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return fmt.Errorf("softhsm: initialise: %w", err)
	}
	return nil
}

// Cleanup removes the process's token directory; call it from TestMain
// after the tests ran.
func Cleanup() {
	if baseDir != "" {
		os.RemoveAll(baseDir)
	}
}

// NewToken initialises a fresh token with a random label, a random user
// PIN (written to a file) and one AES-256 key that never leaves it.
func NewToken(tb testing.TB) *Token {
	tb.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		if errors.Is(setupErr, ErrNoLibrary) {
			proctest.SkipUnlessCI(tb, setupErr.Error())
		}
		tb.Fatal(setupErr)
	}
	t, err := newToken()
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newToken() (*Token, error) {
	tokenMu.Lock()
	defer tokenMu.Unlock()
	slots, err := mod.GetSlotList(true)
	if err != nil {
		return nil, err
	}
	var free uint
	found := false
	for _, s := range slots {
		ti, err := mod.GetTokenInfo(s)
		if err == nil && ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return nil, errors.New("softhsm: no free slot")
	}
	t := &Token{Label: "idv-" + randHex(4), Object: "kek-" + randHex(4), Module: Module(), ctx: mod, pin: randHex(8)}
	so := randHex(8)
	if err := mod.InitToken(free, so, t.Label); err != nil {
		return nil, fmt.Errorf("softhsm: init token: %w", err)
	}
	// The slot of the new token (SoftHSM renumbers after init).
	slots, err = mod.GetSlotList(true)
	if err != nil {
		return nil, err
	}
	found = false
	for _, s := range slots {
		if ti, err := mod.GetTokenInfo(s); err == nil && ti.Label == t.Label {
			t.slot, found = s, true
		}
	}
	if !found {
		return nil, errors.New("softhsm: new token not found")
	}
	s, err := mod.OpenSession(t.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return nil, err
	}
	defer mod.CloseSession(s)
	if err := mod.Login(s, p11.CKU_SO, so); err != nil {
		return nil, fmt.Errorf("softhsm: SO login: %w", err)
	}
	if err := mod.InitPIN(s, t.pin); err != nil {
		return nil, fmt.Errorf("softhsm: init PIN: %w", err)
	}
	mod.Logout(s)
	if err := mod.Login(s, p11.CKU_USER, t.pin); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		return nil, fmt.Errorf("softhsm: user login: %w", err)
	}
	_, err = mod.GenerateKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_LABEL, t.Object),
	})
	if err != nil {
		return nil, fmt.Errorf("softhsm: generate key: %w", err)
	}
	t.PINFile = filepath.Join(baseDir, t.Label+".pin")
	if err := os.WriteFile(t.PINFile, []byte(t.pin+"\n"), 0o600); err != nil {
		return nil, err
	}
	t.URI = "pkcs11:token=" + t.Label + ";object=" + t.Object + "?module-path=" + t.Module + "&pin-source=file:" + t.PINFile
	return t, nil
}

// SetKeyUsable turns the key's CKA_ENCRYPT and CKA_DECRYPT on or off
// (a "disabled" HSM key).
func (t *Token) SetKeyUsable(on bool) error {
	tokenMu.Lock()
	defer tokenMu.Unlock()
	s, err := t.ctx.OpenSession(t.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return err
	}
	defer t.ctx.CloseSession(s)
	if err := t.ctx.Login(s, p11.CKU_USER, t.pin); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		return err
	}
	if err := t.ctx.FindObjectsInit(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, t.Object)}); err != nil {
		return err
	}
	hs, _, err := t.ctx.FindObjects(s, 1)
	t.ctx.FindObjectsFinal(s)
	if err != nil || len(hs) != 1 {
		return fmt.Errorf("softhsm: key not found: %v", err)
	}
	return t.ctx.SetAttributeValue(s, hs[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ENCRYPT, on), p11.NewAttribute(p11.CKA_DECRYPT, on),
	})
}

// CloseAllSessions closes every session of the token, as a token reset
// would: KEKs holding sessions meet CKR_SESSION_HANDLE_INVALID.
func (t *Token) CloseAllSessions() error { return t.ctx.CloseAllSessions(t.slot) }
