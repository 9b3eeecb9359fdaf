package awskms

import (
	"strings"
	"testing"
)

func FuzzRegionOf(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzRegionOf.
	f.Fuzz(func(t *testing.T, uri string) {
		region, err := regionOf(uri)
		if err != nil {
			if strings.Contains(err.Error(), uri) && len(uri) > 20 {
				t.Fatal("the error quotes the URI")
			}
			return
		}
		if region == "" || strings.Contains(region, ":") || !strings.HasPrefix(uri, Prefix) {
			t.Fatalf("accepted %q with region %q", uri, region)
		}
	})
}
