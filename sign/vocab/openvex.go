package vocab

// KindOpenVEX is the attestation (sign.attestations) that attaches the
// OpenVEX documents of scan.vex, for Trivy's --vex oci. It is attached,
// not required: policies do not name it.
const KindOpenVEX = "openvex"

// AttestationKinds are the kinds sign.attestations accepts: Kinds and
// KindOpenVEX.
func AttestationKinds() []string { return append(Kinds(), KindOpenVEX) }
