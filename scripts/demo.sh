#!/usr/bin/env bash
# make demo: build, scan, sign and write the sample service to dist/oci.
# Works offline: the vulnerability DB is built from testdata/vulndb and the
# signing key is generated here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GOEXPERIMENT=jsonv2
bin=bin/slipway
mkdir -p dist/demo
echo "==> fixture vulnerability DB → dist/demo/db"
go run ./internal/cmd/mkvulndb -o dist/demo/db -fixtures testdata/vulndb
if [ ! -f dist/demo/cosign.key ]; then
	echo "==> demo signing key → dist/demo/cosign.key (password: demo)"
	COSIGN_PASSWORD=demo "$bin" keygen --output-key-prefix dist/demo/cosign
fi
echo "==> slipway run -c configs/demo.yaml"
set +e
COSIGN_PASSWORD=demo "$bin" run -c configs/demo.yaml --output-json dist/demo/results.json
code=$?
set -e
cat <<EOM

Where everything is:
  dist/oci                   OCI image layout: the image index (linux/amd64, linux/arm64),
                             its signatures and attestations (Sigstore bundles as OCI 1.1
                             referrers, and cosign v2 .sig/.att)
  dist/demo/results.json     digests, findings, signatures, timings
  dist/demo/hello.sarif      SARIF report (GitHub code scanning)
  dist/demo/hello-scan.json  full scan report (every severity)
  dist/demo/cosign.{key,pub} the demo key pair (password: demo)
  dist/demo/db               the fixture vulnerability DB (Trivy's cache layout)

Try:  $bin scan oci:dist/oci -c configs/demo.yaml
      $bin verify … (after: $bin push oci:dist/oci --repository HOST/demo)
EOM
exit $code
