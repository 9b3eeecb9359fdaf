package main

import (
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"github.com/idvault/idvault/vault/audit"
)

// ocsfVersion is the OCSF schema version of the events query writes. Every
// event carries every attribute its class requires in this version, checked
// by TestOCSFRequiredAttributes against testdata/ocsf-1.3.
const ocsfVersion = "1.3.0"

// ocsfEvent is one record as an OCSF 1.3.0 API Activity (6003) event; the
// query help and docs/siem.md document every field.
type ocsfEvent struct {
	ClassUID     int            `json:"class_uid"`
	ClassName    string         `json:"class_name"`
	CategoryUID  int            `json:"category_uid"`
	CategoryName string         `json:"category_name"`
	ActivityID   int            `json:"activity_id"`
	ActivityName string         `json:"activity_name"`
	TypeUID      int            `json:"type_uid"`
	Time         int64          `json:"time"`
	SeverityID   int            `json:"severity_id"`
	Severity     string         `json:"severity"`
	StatusID     int            `json:"status_id"`
	Status       string         `json:"status"`
	StatusCode   string         `json:"status_code"`
	StatusDetail string         `json:"status_detail,omitempty"`
	Message      string         `json:"message"`
	Actor        ocsfActor      `json:"actor"`
	API          ocsfAPI        `json:"api"`
	Resources    []ocsfResource `json:"resources,omitempty"`
	SrcEndpoint  ocsfEndpoint   `json:"src_endpoint"`
	Metadata     ocsfMetadata   `json:"metadata"`
	Unmapped     map[string]any `json:"unmapped"`
}

// ocsfActor is who acted: the principal as a user, or, for a record
// without one (a Put, a log's open record), the vault instance that wrote
// it as an application.
type ocsfActor struct {
	User    *ocsfUser `json:"user,omitempty"`
	AppName string    `json:"app_name,omitempty"`
	AppUID  string    `json:"app_uid,omitempty"`
}

type ocsfUser struct {
	UID  string `json:"uid"`
	Type string `json:"type,omitempty"`
}

type ocsfAPI struct {
	Operation string       `json:"operation"`
	Request   *ocsfRequest `json:"request,omitempty"`
}

type ocsfRequest struct {
	UID string `json:"uid"`
}

type ocsfResource struct {
	UID   string    `json:"uid"`
	Type  string    `json:"type"`
	Owner *ocsfUser `json:"owner,omitempty"`
}

type ocsfEndpoint struct {
	IP      string `json:"ip,omitempty"`
	Port    int    `json:"port,omitempty"`
	Name    string `json:"name,omitempty"`
	SvcName string `json:"svc_name,omitempty"`
	UID     string `json:"uid,omitempty"`
}

type ocsfMetadata struct {
	Version     string   `json:"version"`
	Product     ocsfProd `json:"product"`
	UID         string   `json:"uid"`
	LogName     string   `json:"log_name"`
	LogProvider string   `json:"log_provider"`
	Sequence    int64    `json:"sequence"`
	Labels      []string `json:"labels,omitempty"`
}

type ocsfProd struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version"`
}

// The resource types of resources[0].
const (
	resourceDocument = "identity-document" // the record names a document (its object ID)
	resourceSubject  = "data-subject"      // the record names a member only (the keyed hash)
	ownerSubject     = "data-subject (keyed hash)"
)

// productVersion is the version of the idvault library this command was
// built with: the module version when installed with "go install ...@vX",
// "devel" (with the VCS revision when known) when built from a checkout.
var productVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := ""
	for _, d := range bi.Deps {
		if d.Path == "github.com/idvault/idvault" && d.Replace == nil {
			v = d.Version
		}
	}
	if bi.Main.Path == "github.com/idvault/idvault" {
		v = bi.Main.Version
	}
	if v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel+" + s.Value[:12]
		}
	}
	return "devel"
})

// toOCSF maps one record to an OCSF event.
func toOCSF(r audit.Record, verified bool) ocsfEvent {
	act, known := eventActivities[r.Event]
	if !known {
		act = actOther
	}
	e := ocsfEvent{ClassUID: 6003, ClassName: "API Activity", CategoryUID: 6, CategoryName: "Application Activity",
		ActivityID: act.id, ActivityName: act.name,
		Time: r.Time.UnixMilli(), StatusCode: string(r.Outcome), StatusDetail: r.Reason,
		API: ocsfAPI{Operation: string(r.Event)},
		Metadata: ocsfMetadata{Version: ocsfVersion,
			Product: ocsfProd{Name: "idvault", VendorName: "idvault", Version: productVersion()},
			UID:     r.Log + ":" + strconv.FormatInt(r.Seq, 10), LogName: r.Log, LogProvider: "idvault audit log", Sequence: r.Seq},
		Unmapped: map[string]any{"purpose": r.Purpose, "subject": r.Subject, "detail": r.Detail, "reason": r.Reason, "outcome": string(r.Outcome)},
	}
	if act == actOther {
		e.ActivityName = string(r.Event)
	}
	e.TypeUID = e.ClassUID*100 + e.ActivityID
	switch r.Outcome {
	case audit.OutcomeOK:
		e.StatusID, e.Status = 1, "Success"
	case audit.OutcomeRefused, audit.OutcomeError:
		e.StatusID, e.Status = 2, "Failure"
	default: // "started": a long operation begun, neither success nor failure yet
		e.StatusID, e.Status = 99, string(r.Outcome)
	}
	e.SeverityID, e.Severity = 1, "Informational"
	switch {
	case r.Event == audit.EventAlert && r.Reason == "canary-touched":
		e.SeverityID, e.Severity = 5, "Critical"
	case r.Event == audit.EventAlert:
		e.SeverityID, e.Severity = 4, "High"
	case r.Outcome == audit.OutcomeRefused || r.Outcome == audit.OutcomeError:
		e.SeverityID, e.Severity = 2, "Low"
	}
	e.Message = string(r.Event) + " " + string(r.Outcome)
	if r.Reason != "" {
		e.Message += ": " + r.Reason
	}
	if r.Detail != "" {
		e.Message += " (" + r.Detail + ")"
	}
	if r.Principal != "" {
		e.Actor.User = &ocsfUser{UID: r.Principal}
	} else {
		e.Actor.AppName, e.Actor.AppUID = "idvault", r.Log
	}
	if r.TokenID != "" {
		e.API.Request = &ocsfRequest{UID: r.TokenID}
	}
	var owner *ocsfUser
	if r.Subject != "" {
		owner = &ocsfUser{UID: r.Subject, Type: ownerSubject}
	}
	switch {
	case r.Object != "":
		e.Resources = []ocsfResource{{UID: r.Object, Type: resourceDocument, Owner: owner}}
	case r.Subject != "":
		e.Resources = []ocsfResource{{UID: r.Subject, Type: resourceSubject}}
	}
	e.SrcEndpoint = endpointOf(r.RemoteAddr, r.Log)
	if !verified {
		e.Metadata.Labels = []string{"unverified"}
	}
	return e
}

// endpointOf is the source endpoint of a record: the requester's address
// ("ip:port", "[ip6]:port" or a bare IP) when the record has one, kept as
// a name when it is anything else; without one (a Put, an administrative
// call, the sweeper), the vault instance that wrote the record, named by
// its log ID.
func endpointOf(addr, log string) ocsfEndpoint {
	if addr == "" {
		return ocsfEndpoint{SvcName: "idvault", UID: log}
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Port() != 0 {
		return ocsfEndpoint{IP: ap.Addr().Unmap().WithZone("").String(), Port: int(ap.Port())}
	}
	if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
		return ocsfEndpoint{IP: a.Unmap().WithZone("").String()}
	}
	return ocsfEndpoint{Name: addr}
}
