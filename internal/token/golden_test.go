package token

import (
	"errors"
	"testing"
)

// Frozen tokens, sealed once with the committed test keysets for testVault.
// They guard the wire format: if one stops opening, the format changed, and
// that needs a new Prefix, not new vectors.
var goldenTokens = []struct {
	name   string
	keyset string // the keyset it was sealed with (its primary key)
	tok    string
	min    bool // sealed over sampleClaims with Principal "a" and Purpose "p"
}{
	{"old key", "test-keyset-old.json",
		"idv1_AS0vO1vLsitHnVXQ37qCc0xeKsLylck-lW5d7I7roxEJsq6aH2jm-VAZATWBfUH8sjen_ni8S9FgY26JTiKH0ZkD8Im5OFDN2qclEBqAsWhooPV_x9BU98o2lCM0NzbPrQ8VJYX9XtwpVnHIHoTE5VWp7Z19wGWNRyxCURB9knueho3Ht31EHGMK-4keu6D3",
		false},
	{"old key, minimal claims", "test-keyset-old.json",
		"idv1_AS0vO1vhnlRgbZ2NuoHwb0Nea44aYd0iy6uC3UCvS-grU_4QibHu3BiCL_iTfF1tor45_CncurybkntcDzEZPxdvjWYnSwAiIpYCjjfHozRapniOBdQToA",
		true},
	{"rotated primary", "test-keyset-rotated.json",
		"idv1_Af0aCetUJkhJ6PACaeZRCZOA31SxPGYG5M7quN41Fw9a4XusG2dUFoLobKtak5WrS0o2CPUYjG5_Ky9x_-KMQ4fuVDR3tYqEsnieeQ_MIL41uBIUIeH5xp3ygeYBfBbAyRSF2LltxZx6wI6di6tCWQBJYzeDah1ifx6V56ELtLNTcL6Hpa0YFRZ-wy40GulZ",
		false},
	{"rotated primary, minimal claims", "test-keyset-rotated.json",
		"idv1_Af0aCeun2d6yHK3oIbdjcIwR12qJCbxZp0qiRcoGThyBXecdCQITvDXjuU7fh8T9VIFYzbC3Tb_ccJp_SOX7me7vuJqRXnfchQ3MeVFYv-AabZ6LYLEURg",
		true},
}

func TestGoldenTokens(t *testing.T) {
	old := newSealer(t, loadKeyset(t, "test-keyset-old.json"), testVault)
	rotated := newSealer(t, loadKeyset(t, "test-keyset-rotated.json"), testVault)
	otherVault := testVault
	otherVault[0] ^= 0x80
	wrongVault := newSealer(t, loadKeyset(t, "test-keyset-rotated.json"), otherVault)

	for _, g := range goldenTokens {
		t.Run(g.name, func(t *testing.T) {
			want := sampleClaims()
			if g.min {
				want.Principal, want.Purpose = "a", "p"
			}
			// The rotated keyset opens everything; the old one only its own.
			got, err := rotated.Open(g.tok)
			if err != nil || got != want {
				t.Fatalf("rotated keyset: Open = %+v, %v; want %+v", got, err, want)
			}
			got, err = old.Open(g.tok)
			if g.keyset == "test-keyset-old.json" {
				if err != nil || got != want {
					t.Fatalf("old keyset: Open = %+v, %v", got, err)
				}
			} else if !errors.Is(err, ErrInvalid) {
				t.Fatalf("old keyset opened a token of the newer key: %v", err)
			}
			if _, err := wrongVault.Open(g.tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("opened in another vault: %v", err)
			}
		})
	}
}
