package pipeline

import (
	"bytes"
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// DecodePolicyFile parses a policy file for `slipway verify --policy`: the
// shape of slipway.yaml's policy block, at the top level. Like
// DecodeStrict, an unknown key or a value of the wrong type is a
// *ConfigError naming file, the line and the key (policy.KEY). Values are
// not checked here: converting them into a sign.Policy does that.
func DecodePolicyFile(file string, data []byte) (*PolicyConfig, error) {
	var p PolicyConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&p)
	if err == nil || errors.Is(err, io.EOF) {
		return &p, nil
	}
	return nil, yamlError(file, data, err)
}
