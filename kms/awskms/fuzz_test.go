package awskms

import (
	"strings"
	"testing"
)

func FuzzRegionOf(f *testing.F) {
	f.Add("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	f.Add("aws-kms://arn:aws:kms:us-east-1:111122223333:alias/idvault")
	f.Add("aws-kms://arn:aws:kms::1:key/x")
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
