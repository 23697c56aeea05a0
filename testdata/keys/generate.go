//go:build ignore

// generate writes the test key pairs in this directory with cosign's own key
// generation code: go run ./testdata/keys/generate.go (from the module root).
package main

import (
	"log"
	"os"
	"path/filepath"

	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// password encrypts every test private key; README.md documents it.
const password = "slipway-test-password"

func main() {
	dir := filepath.Join("testdata", "keys")
	for _, name := range []string{"cosign", "other"} {
		kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(password), nil })
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), kb.PrivateBytes, 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pub"), kb.PublicBytes, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
