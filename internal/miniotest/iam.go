package miniotest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
	"golang.org/x/crypto/argon2"
)

// NewUser creates an IAM user on the server whose only rights are those of
// policy (an IAM policy document, JSON), and returns its access and secret
// keys. Unlike an STS session policy (which MinIO bounds to 2048 bytes), an
// attached policy may be as long as a real deployment's. The user and its
// policy live until Main stops the server.
//
// It speaks MinIO's admin API (v3) itself: add-canned-policy, add-user
// (whose body madmin-go encrypts under the root secret key; see
// adminEncrypt) and set-user-or-group-policy.
func (s *Srv) NewUser(tb testing.TB, policy string) (accessKey, secretKey string) {
	tb.Helper()
	name := "pol-" + randHex(tb, 8)
	accessKey = "usr" + randHex(tb, 8)
	secretKey = randHex(tb, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.admin(ctx, http.MethodPut, "add-canned-policy", url.Values{"name": {name}}, []byte(policy)); err != nil {
		tb.Fatalf("miniotest: add policy: %v", err)
	}
	req, err := json.Marshal(map[string]string{"secretKey": secretKey, "status": "enabled"})
	if err != nil {
		tb.Fatal(err)
	}
	body, err := adminEncrypt(s.secretKey, req)
	if err != nil {
		tb.Fatalf("miniotest: add user: %v", err)
	}
	if err := s.admin(ctx, http.MethodPut, "add-user", url.Values{"accessKey": {accessKey}}, body); err != nil {
		tb.Fatalf("miniotest: add user: %v", err)
	}
	q := url.Values{"policyName": {name}, "userOrGroup": {accessKey}, "isGroup": {"false"}}
	if err := s.admin(ctx, http.MethodPut, "set-user-or-group-policy", q, nil); err != nil {
		tb.Fatalf("miniotest: attach policy: %v", err)
	}
	return accessKey, secretKey
}

// admin sends one admin API request signed with the root credentials.
func (s *Srv) admin(ctx context.Context, method, op string, q url.Values, body []byte) error {
	u := url.URL{Scheme: "http", Host: s.endpoint, Path: "/minio/admin/v3/" + op, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	req.ContentLength = int64(len(body))
	req = signer.SignV4(*req, s.accessKey, s.secretKey, "", "us-east-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%s %s: %s: %s", method, op, resp.Status, msg)
	}
	return nil
}

// adminEncrypt is madmin-go's EncryptData for a body shorter than one
// sio-go fragment (16 KiB): salt (32 bytes) || algorithm ID (0: argon2id,
// AES-256-GCM) || nonce (8 bytes) || the body sealed as the final fragment
// of a sio-go stream. The key is argon2id(password, salt, t=1, 64 MiB, 4
// threads); fragment i is sealed under nonce || uint32le(i) with associated
// data flag || tag, where flag is 0x80 for the final fragment and tag is
// the AEAD tag of nothing under fragment 0's nonce (sio-go binds the
// stream's associated data, here empty, that way).
func adminEncrypt(password string, data []byte) ([]byte, error) {
	const fragment = 1 << 14
	if len(data) >= fragment {
		return nil, fmt.Errorf("admin body of %d bytes: longer than one fragment", len(data))
	}
	var salt [32]byte
	var nonce [8]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	key := argon2.IDKey([]byte(password), salt[:], 1, 64*1024, 4, 32)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	seq := func(i uint32) []byte {
		n := make([]byte, aead.NonceSize())
		copy(n, nonce[:])
		binary.LittleEndian.PutUint32(n[len(n)-4:], i)
		return n
	}
	ad := append([]byte{0x80}, aead.Seal(nil, seq(0), nil, nil)...)
	out := append(append(append([]byte{}, salt[:]...), 0x00), nonce[:]...)
	return aead.Seal(out, seq(1), data, ad), nil
}
