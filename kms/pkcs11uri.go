package kms

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// PKCS11URI is a parsed RFC 7512 PKCS#11 URI, e.g.
//
//	pkcs11:token=idvault;object=kek-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/idvault/pin
//
// Path attributes (token, object, id, serial, slot-id…) select the key;
// query attributes say how to reach it (module-path, pin-source). Values
// are percent-decoded. A pin-value query attribute is refused by
// ParsePKCS11URI: the URI becomes the KEK's ID, stored in clear in every
// key record, so the PIN must come from a named source instead.
type PKCS11URI struct {
	Path  map[string]string
	Query map[string]string
}

// ErrPKCS11URI is returned by ParsePKCS11URI for a malformed URI.
var ErrPKCS11URI = fmt.Errorf("kms: malformed pkcs11 URI: %w", ErrUnsupportedURI)

// maxPKCS11URI bounds the URI length accepted.
const maxPKCS11URI = 2048

// ParsePKCS11URI parses s (RFC 7512). It refuses an attribute given twice,
// an empty or unknown-shaped attribute name, bad percent-encoding, and a
// pin-value. Errors do not quote s.
func ParsePKCS11URI(s string) (*PKCS11URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok || len(s) > maxPKCS11URI {
		return nil, ErrPKCS11URI
	}
	pathPart, queryPart, _ := strings.Cut(rest, "?")
	u := &PKCS11URI{Path: map[string]string{}, Query: map[string]string{}}
	if err := parseAttrs(pathPart, ";", u.Path); err != nil {
		return nil, err
	}
	if err := parseAttrs(queryPart, "&", u.Query); err != nil {
		return nil, err
	}
	if _, bad := u.Query["pin-value"]; bad {
		return nil, fmt.Errorf("kms: pkcs11 URI carries pin-value: give the PIN from a named source (pin-source or options): %w", ErrUnsupportedURI)
	}
	if _, bad := u.Path["pin-value"]; bad {
		return nil, fmt.Errorf("kms: pkcs11 URI carries pin-value: %w", ErrUnsupportedURI)
	}
	return u, nil
}

func parseAttrs(s, sep string, into map[string]string) error {
	if s == "" {
		return nil
	}
	for _, kv := range strings.Split(s, sep) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validAttrName(k) {
			return ErrPKCS11URI
		}
		if _, dup := into[k]; dup {
			return ErrPKCS11URI
		}
		dv, err := url.PathUnescape(v)
		if err != nil {
			return ErrPKCS11URI
		}
		into[k] = dv
	}
	return nil
}

func validAttrName(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// KeyID returns the canonical form of the URI's path attributes alone,
// sorted and percent-encoded: "pkcs11:object=kek;token=idvault". It names
// the key, not how to reach it, so moving the module or the PIN file does
// not change a KEK's ID.
func (u *PKCS11URI) KeyID() string {
	return "pkcs11:" + joinAttrs(u.Path, ";")
}

// String is the canonical URI: KeyID, then the query attributes, if any.
func (u *PKCS11URI) String() string {
	s := u.KeyID()
	if len(u.Query) > 0 {
		s += "?" + joinAttrs(u.Query, "&")
	}
	return s
}

func joinAttrs(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + pctEncode(m[k])
	}
	return strings.Join(parts, sep)
}

// pctEncode escapes everything outside RFC 7512's unreserved set plus the
// characters it allows in values ( ":" "[" "]" "@" "!" "$" "'" "(" ")" "*"
// "+" "," "/" ).
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:[]@!$'()*+,/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
