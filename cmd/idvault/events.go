package main

import (
	"slices"
	"strings"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
)

// activity is how an event maps to an OCSF API Activity: its activity_id
// and activity_name.
type activity struct {
	id   int
	name string
}

// The OCSF API Activity (6003) activities.
var (
	actCreate = activity{1, "Create"}
	actRead   = activity{2, "Read"}
	actUpdate = activity{3, "Update"}
	actDelete = activity{4, "Delete"}
	actOther  = activity{99, "Other"} // activity_name is then the event itself
)

// eventActivities lists every event the vault writes, with its OCSF
// activity. It is the list --event accepts; TestEveryEventAccepted fails
// when the vault gains an event constant missing here.
var eventActivities = map[audit.Event]activity{
	audit.EventPut:           actCreate, // a document stored
	audit.EventGrant:         actCreate, // a token issued
	audit.EventRedeem:        actRead,   // a document released (or refused)
	vault.EventSubjectAccess: actRead,   // what is held about a member, listed
	audit.EventHold:          actUpdate,
	audit.EventRelease:       actUpdate,
	audit.EventRotate:        actUpdate, // a key rotated, the KEK rewrapped
	audit.EventDelete:        actDelete,
	audit.EventExpire:        actDelete,
	audit.EventErase:         actDelete,
	vault.EventDecide:        actOther, // a reviewer's decision (its delete is a record of its own)
	audit.EventAlert:         actOther,
	audit.EventSweep:         actOther,
	audit.EventOpen:          actOther,
	audit.EventWitness:       actOther, // an instance vouches for another log's or the state chain's head
}

// knownEvents are the events --event accepts, sorted.
var knownEvents = func() []string {
	var evs []string
	for e := range eventActivities {
		evs = append(evs, string(e))
	}
	slices.Sort(evs)
	return evs
}()

// knownOutcomes are the outcomes the vault writes, which --outcome accepts.
var knownOutcomes = []string{string(audit.OutcomeOK), string(audit.OutcomeRefused), string(audit.OutcomeError), string(vault.OutcomeStarted)}

// oneOf renders a list for a usage message: "a, b or c".
func oneOf(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
