package audit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A checkpoint is a signed tree head of one log, stored as a note
// (golang.org/x/mod/sumdb/note, Ed25519) whose text is exactly:
//
//	idvault audit checkpoint v1
//	<log ID>
//	<tree size, decimal>
//	<tree hash, base64: tlog.TreeHash of the first size records>
//	<time, RFC 3339 with nanoseconds, UTC>
//	final                      (only in the checkpoint written by Close)
//	reopen                     (only in the checkpoint that continues a closed log)
//
// A reopen checkpoint repeats the tree of the final checkpoint of the same
// size: it is the signed permission for records after that final one,
// written by the appender that continues the log before its first record.
// The header names this format so that a checkpoint can never be mistaken
// for a go.sum database tree head signed by the same kind of key.
const checkpointHeader = "idvault audit checkpoint v1"

// maxCheckpointLen bounds a stored checkpoint; larger objects are corrupt.
const maxCheckpointLen = 4096

type checkpoint struct {
	log    string
	tree   tlog.Tree
	time   time.Time
	final  bool
	reopen bool
}

func (c checkpoint) text() string {
	var b strings.Builder
	b.WriteString(checkpointHeader + "\n")
	b.WriteString(c.log + "\n")
	b.WriteString(strconv.FormatInt(c.tree.N, 10) + "\n")
	b.WriteString(c.tree.Hash.String() + "\n")
	b.WriteString(c.time.UTC().Format(time.RFC3339Nano) + "\n")
	if c.final {
		b.WriteString("final\n")
	} else if c.reopen {
		b.WriteString("reopen\n")
	}
	return b.String()
}

// parseCheckpointText parses the (already verified) text of a checkpoint
// note, accepting only what text produces.
func parseCheckpointText(text string) (checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return checkpoint{}, corruptf("checkpoint text does not end in newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 5 && len(lines) != 6 {
		return checkpoint{}, corruptf("checkpoint has %d lines", len(lines))
	}
	if lines[0] != checkpointHeader {
		return checkpoint{}, corruptf("not an idvault checkpoint")
	}
	var c checkpoint
	if c.log = lines[1]; !ValidLogID(c.log) {
		return checkpoint{}, corruptf("checkpoint log ID malformed")
	}
	n, err := strconv.ParseInt(lines[2], 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != lines[2] {
		return checkpoint{}, corruptf("checkpoint size malformed")
	}
	c.tree.N = n
	h, err := tlog.ParseHash(lines[3])
	if err != nil || h.String() != lines[3] {
		return checkpoint{}, corruptf("checkpoint hash malformed")
	}
	c.tree.Hash = h
	t, err := time.Parse(time.RFC3339Nano, lines[4])
	if err != nil || t.UTC().Format(time.RFC3339Nano) != lines[4] {
		return checkpoint{}, corruptf("checkpoint time malformed")
	}
	c.time = t.UTC()
	if len(lines) == 6 {
		switch lines[5] {
		case "final":
			c.final = true
		case "reopen":
			c.reopen = true
		default:
			return checkpoint{}, corruptf("checkpoint has an unknown trailing line")
		}
	}
	return c, nil
}

func signCheckpoint(c checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.text()}, s)
}

// openCheckpoint verifies the signature on msg and parses its text. On
// failure it says which class of problem it found.
func openCheckpoint(msg []byte, known note.Verifiers) (checkpoint, Class, error) {
	if len(msg) > maxCheckpointLen {
		return checkpoint{}, ClassCorrupt, corruptf("checkpoint longer than %d bytes", maxCheckpointLen)
	}
	text, class, err := openNote(msg, known)
	if err != nil {
		return checkpoint{}, class, fmt.Errorf("%w: checkpoint %s", ErrCorrupt, strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
	}
	c, err := parseCheckpointText(text)
	if err != nil {
		return checkpoint{}, ClassCorrupt, err
	}
	return c, "", nil
}

// GenerateKey returns a new Ed25519 key pair for signing checkpoints, in the
// note key format: signerKey ("PRIVATE+KEY+name+hash+data") is a secret for
// NewAppender; verifierKey ("name+hash+data") is public, for Verify. name
// identifies the key (e.g. "idvault-audit-<vault ID>"): non-empty UTF-8
// without spaces or '+'.
func GenerateKey(name string) (signerKey, verifierKey string, err error) {
	// The rule of note.NewSigner, checked here so that a bad name fails now
	// rather than at NewAppender.
	if name == "" || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsSpace) >= 0 || strings.Contains(name, "+") {
		return "", "", errors.New("audit: key name must be non-empty UTF-8 without spaces or '+'")
	}
	return note.GenerateKey(rand.Reader, name)
}

// parseSigner parses a signer key from GenerateKey. Its error never quotes
// the key.
func parseSigner(signerKey string) (note.Signer, error) {
	s, err := note.NewSigner(signerKey)
	if err != nil {
		return nil, errors.New("audit: signer key is not a valid note signer key")
	}
	return s, nil
}

// newSigner returns a LedgerSigner or a StateSigner for signerKey.
func newSigner[T ~struct{ s note.Signer }](signerKey string) (*T, error) {
	s, err := parseSigner(signerKey)
	if err != nil {
		return nil, err
	}
	return &T{s: s}, nil
}

// signEntry validates a ledger or state entry and signs the text of its
// note.
func signEntry(s note.Signer, e interface {
	check() error
	noteText() (string, error)
}) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	text, err := e.noteText()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: text}, s)
}

// parseVerifiers parses a verifier key from GenerateKey into the list that
// note.Open checks signatures against.
func parseVerifiers(verifierKey string) (note.Verifiers, error) {
	vk, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, errors.New("audit: verifier key is not a valid note verifier key")
	}
	return note.VerifierList(vk), nil
}

// Storage keys.
const auditPrefix = "audit/"

func logPrefix(log string) string { return auditPrefix + log + "/" }

func checkpointPrefix(log string) string { return logPrefix(log) + "checkpoints/" }

func batchKey(log string, first int64) string {
	return fmt.Sprintf("%s%020d", logPrefix(log), first)
}

// checkpointKey names a checkpoint by its tree size; the final one, written
// at Close, carries a "-final" suffix so that it can be written even when a
// periodic checkpoint of the same size exists (both are write-once), and it
// sorts right after that one.
func checkpointKey(log string, n int64, final bool) string {
	k := fmt.Sprintf("%s%020d", checkpointPrefix(log), n)
	if final {
		k += "-final"
	}
	return k
}

// reopenKey names the reopen checkpoint of a log closed at size n; it sorts
// right after the final checkpoint of that size.
func reopenKey(log string, n int64) string {
	return fmt.Sprintf("%s%020d-reopen", checkpointPrefix(log), n)
}

// parseSeqName parses a 20-digit decimal name.
func parseSeqName(s string) (int64, bool) {
	if len(s) != 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// checkpointKeyOf is the key checkpoint c is stored under.
func checkpointKeyOf(c checkpoint) string {
	if c.reopen {
		return reopenKey(c.log, c.tree.N)
	}
	return checkpointKey(c.log, c.tree.N, c.final)
}
