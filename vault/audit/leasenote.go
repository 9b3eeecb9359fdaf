package audit

// The lease note: its format, and finding a log's latest lease. Writers
// take and renew leases (lease.go); Verify reads them as evidence.

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/store"
)

// Leases let a new Appender continue an idle log instead of starting one,
// so that the number of logs grows with the number of concurrent writers,
// not with restarts. A lease is a sequence of create-only objects
//
//	audit/_lease/<log>/<generation, 20 digits>
//
// whose latest generation says who holds the log until when (or that it
// was released at Close), and carries the Merkle frontier of a checkpointed
// prefix of the log, so that the next holder rebuilds its state from that
// checkpoint and the records after it rather than from the whole log. It
// is a note signed with the audit key, whose text is exactly:
//
//	idvault audit lease v1
//	<log ID>
//	<holder: 32 lower-case hex digits>
//	<expiry, RFC 3339 with nanoseconds, UTC> | closing <expiry> | released
//	<size of the checkpointed prefix, decimal>
//	<one base64 hash per subtree of the frontier, largest first>
//
// Taking a lease is creating the next generation: of two contenders exactly
// one succeeds. A lease is a courtesy, not the safety net: every batch is
// itself a create-only object named by its first sequence number, so two
// writers that both believe they hold a log collide on their next batch,
// and the one whose write fails moves to another log without losing a
// record. The frontier in a lease is used only once its root matches a
// signed checkpoint of the same size.
//
// Expiry is written and judged on the store's clock when the store tells
// one (store.Clock), else on the appender's: an instance whose own clock
// runs days ahead must not take over a log that is live by the storage's
// time. A store whose clock cannot be read blocks takeovers of live leases
// (released ones may still be continued).
//
// Close writes three things in order: a "closing" generation (create-only,
// carrying the frontier of every record), the final checkpoint, and a
// "released" generation with the same frontier. Only an appender that got
// the closing generation, with no later generation stored, writes the final
// checkpoint: a writer that lost its log to another never closes it under
// the new holder. An appender that continues a log whose closing generation
// expired (its writer died while closing, or was judged dead) completes the
// close itself before its first record: the final checkpoint of exactly
// that frontier (create-only: whichever of the two lands first is kept),
// then the reopen checkpoint.
//
// Verify reads the latest lease of every log as evidence: a validly signed
// lease vouches for its frontier (the log must hold at least those records,
// hashing to that root), a released one for a final checkpoint of its size,
// and a registered log that holds no record while its lease says it had
// some was deleted.
const (
	leasePrefix = auditPrefix + "_lease/"
	leaseHeader = "idvault audit lease v1"
	maxLeaseLen = 8192
)

func leaseDir(log string) string { return leasePrefix + log + "/" }

func leaseKey(log string, gen int64) string { return fmt.Sprintf("%s%020d", leaseDir(log), gen) }

type lease struct {
	log      string
	holder   string
	expires  time.Time
	released bool
	closing  bool // the holder is closing the log: a final checkpoint of f may follow
	f        frontier
}

// sign returns the lease as a signed note.
func (l *lease) sign(s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(l.marshal())}, s)
}

// openLease verifies a lease note and parses its text.
func openLease(msg []byte, known note.Verifiers) (lease, error) {
	text, err := openShortNote(msg, known, "lease", maxLeaseLen)
	if err != nil {
		return lease{}, err
	}
	return parseLease([]byte(text))
}

func (l *lease) marshal() []byte {
	var b strings.Builder
	b.WriteString(leaseHeader + "\n" + l.log + "\n" + l.holder + "\n")
	switch {
	case l.released:
		b.WriteString("released\n")
	case l.closing:
		b.WriteString("closing " + l.expires.UTC().Format(time.RFC3339Nano) + "\n")
	default:
		b.WriteString(l.expires.UTC().Format(time.RFC3339Nano) + "\n")
	}
	b.WriteString(strconv.FormatInt(l.f.n, 10) + "\n")
	for _, h := range l.f.hashes {
		b.WriteString(h.String() + "\n")
	}
	return []byte(b.String())
}

// parseLease decodes a lease object strictly (only what marshal writes).
func parseLease(b []byte) (lease, error) {
	if len(b) > maxLeaseLen {
		return lease{}, corruptf("lease longer than %d bytes", maxLeaseLen)
	}
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		return lease{}, corruptf("lease does not end in newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 5 || lines[0] != leaseHeader {
		return lease{}, corruptf("not an idvault lease")
	}
	l := lease{log: lines[1], holder: lines[2]}
	if !ValidLogID(l.log) {
		return lease{}, corruptf("lease log ID malformed")
	}
	if len(l.holder) != 32 || validField(fieldSpec{"holder", 32, kindHex, true}, l.holder) != nil {
		return lease{}, corruptf("lease holder malformed")
	}
	if lines[3] == "released" {
		l.released = true
	} else {
		exp, closing := strings.CutPrefix(lines[3], "closing ")
		t, err := time.Parse(time.RFC3339Nano, exp)
		if err != nil || t.UTC().Format(time.RFC3339Nano) != exp {
			return lease{}, corruptf("lease expiry malformed")
		}
		l.expires, l.closing = t.UTC(), closing
	}
	n, err := strconv.ParseInt(lines[4], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[4] {
		return lease{}, corruptf("lease size malformed")
	}
	if len(lines)-5 != bits.OnesCount64(uint64(n)) {
		return lease{}, corruptf("lease frontier has the wrong number of hashes")
	}
	l.f.n = n
	for _, line := range lines[5:] {
		h, err := tlog.ParseHash(line)
		if err != nil || h.String() != line {
			return lease{}, corruptf("lease frontier hash malformed")
		}
		l.f.hashes = append(l.f.hashes, h)
	}
	return l, nil
}

// latestLease returns the latest lease generation of log (gen -1: none),
// with ok false when it is not a lease signed by a known key: an expired
// lease with an empty frontier then, which blocks nobody. A generation
// deleted between the listing and the read (a holder renewing deletes the
// one before) is looked up again.
func latestLease(ctx context.Context, st store.Store, log string, known note.Verifiers) (l lease, gen int64, ok bool, err error) {
	for attempt := 0; ; attempt++ {
		gen = -1
		var key string
		for k, err := range st.List(ctx, leaseDir(log)) {
			if err != nil {
				return lease{}, -1, false, err
			}
			if g, ok := parseSeqName(k[len(leaseDir(log)):]); ok && g > gen {
				gen, key = g, k
			}
		}
		if gen < 0 {
			return lease{}, -1, false, nil
		}
		b, err := readSmall(ctx, st, key, maxLeaseLen)
		if errors.Is(err, store.ErrNotFound) {
			if attempt < 3 {
				continue
			}
			return lease{log: log}, gen, false, nil
		}
		if err != nil {
			return lease{}, -1, false, err
		}
		l, err = openLease(b, known)
		if err != nil || l.log != log {
			return lease{log: log}, gen, false, nil
		}
		return l, gen, true, nil
	}
}
