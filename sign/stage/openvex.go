package stage

// WithOpenVEX is the OpenVEX document the openvex attestation attaches
// (sign.OpenVEX makes it from scan.vex). Required with that attestation.
func WithOpenVEX(doc []byte) Option {
	return func(o *options) { o.openvex = doc }
}
