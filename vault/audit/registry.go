package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/vault/store"
)

// The log registry: one create-only object per log, written (with
// retention, when the appender has it) before the log's first record:
//
//	audit/_registry/<log>   a note signed with the audit key, whose text is exactly
//
//	idvault audit log v1
//	<log ID>
//	<creation time, RFC 3339 with nanoseconds, UTC>
//
// Verify enumerates logs from the registry as well as from the records, so
// a log deleted as a whole (records and checkpoints) is reported as
// missing, and a log nobody registered (copied in by someone without the
// signing key) as unregistered. On an object-locked bucket the entries
// cannot be deleted; elsewhere a --state file or a witness keeps the list.
const (
	registryPrefix = auditPrefix + "_registry/"
	registryHeader = "idvault audit log v1"
)

func registryKey(log string) string { return registryPrefix + log }

// registration is a verified registry entry.
type registration struct {
	log  string
	time time.Time
}

// openRegistration verifies and parses a registry entry.
func openRegistration(msg []byte, known note.Verifiers) (registration, Class, error) {
	if len(msg) > maxCheckpointLen {
		return registration{}, ClassCorrupt, corruptf("registry entry longer than %d bytes", maxCheckpointLen)
	}
	text, class, err := openNote(msg, known)
	if err != nil {
		return registration{}, class, err
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if !strings.HasSuffix(text, "\n") || len(lines) != 3 || lines[0] != registryHeader {
		return registration{}, ClassCorrupt, corruptf("not an idvault log registration")
	}
	r := registration{log: lines[1]}
	if !ValidLogID(r.log) {
		return registration{}, ClassCorrupt, corruptf("registration log ID malformed")
	}
	t, err := time.Parse(time.RFC3339Nano, lines[2])
	if err != nil || t.UTC().Format(time.RFC3339Nano) != lines[2] {
		return registration{}, ClassCorrupt, corruptf("registration time malformed")
	}
	r.time = t.UTC()
	return r, "", nil
}

// openNote verifies a note with exactly one signature in canonical form
// and returns its text.
func openNote(msg []byte, known note.Verifiers) (string, Class, error) {
	n, err := note.Open(msg, known)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return "", ClassUnknownKey, fmt.Errorf("%w: signed by an unknown key", ErrCorrupt)
		case errors.As(err, &invalid):
			return "", ClassBadSignature, fmt.Errorf("%w: signature invalid", ErrCorrupt)
		default:
			return "", ClassCorrupt, fmt.Errorf("%w: note malformed", ErrCorrupt)
		}
	}
	// Exactly one signature, in the one encoding note.Sign produces: base64
	// ignores some bit flips (padding bits), and a stored object must not
	// change undetected even where its meaning would not.
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		return "", ClassCorrupt, corruptf("note must carry exactly one signature")
	}
	sig, err := base64.StdEncoding.DecodeString(n.Sigs[0].Base64)
	if err != nil || n.Text+"\n— "+n.Sigs[0].Name+" "+base64.StdEncoding.EncodeToString(sig)+"\n" != string(msg) {
		return "", ClassCorrupt, corruptf("note not in canonical form")
	}
	return n.Text, "", nil
}

// openShortNote is openNote for a note of at most maxLen bytes; what names the
// note in the error for a longer one.
func openShortNote(msg []byte, known note.Verifiers, what string, maxLen int) (string, error) {
	if len(msg) > maxLen {
		return "", corruptf("%s longer than %d bytes", what, maxLen)
	}
	text, _, err := openNote(msg, known)
	return text, err
}

// readRegistry reads every registry entry: the verified ones by log, and
// the problem of each bad one.
func readRegistry(ctx context.Context, st store.Store, known note.Verifiers) (map[string]registration, map[string]*Problem, error) {
	regs := map[string]registration{}
	bad := map[string]*Problem{}
	for key, err := range st.List(ctx, registryPrefix) {
		if err != nil {
			return nil, nil, err
		}
		log := key[len(registryPrefix):]
		msg, err := readSmall(ctx, st, key, maxCheckpointLen)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		r, class, err := openRegistration(msg, known)
		switch {
		case err != nil:
			bad[log] = &Problem{Log: log, Seq: -1, Key: key, Class: class, Detail: "registry entry: " + strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")}
		case r.log != log:
			bad[log] = &Problem{Log: log, Seq: -1, Key: key, Class: ClassCorrupt, Detail: "registry entry names another log"}
		default:
			regs[log] = r
		}
	}
	return regs, bad, nil
}

// readSmall reads an object of at most max bytes (longer: the first max+1,
// which the caller's parser refuses).
func readSmall(ctx context.Context, st store.Store, key string, max int64) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = io.Copy(&b, io.LimitReader(rc, max+1))
	return b.Bytes(), err
}
