#!/usr/bin/env bash
# Build the platform-otel sidecar collector (otelcol-platform) from manifest.yaml with
# the OpenTelemetry Collector Builder (ocb), once per manifest content.
#
# The binary is cached under
#   ${PLATFORM_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/platform-otel}/otelcol-<sha256 of manifest.yaml>/otelcol-platform
# and reused while the manifest is unchanged. The last line on stdout is the binary path;
# all build output goes to stderr. Needs only Go (GOPROXY/GOFLAGS/GOTOOLCHAIN are taken
# from the environment as they are); ocb is `go install`ed into the cache at the version
# the manifest pins for the core modules.
#
#   BIN=$(collector/build.sh | tail -n 1)
#   "$BIN" validate --config collector/config.yaml
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="${here}/manifest.yaml"
cache_root="${PLATFORM_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/platform-otel}"

command -v go >/dev/null 2>&1 || { echo "build.sh: Go is required (https://go.dev/dl/)" >&2; exit 2; }
command -v sha256sum >/dev/null 2>&1 || { echo "build.sh: sha256sum is required" >&2; exit 2; }

hash="$(sha256sum "${manifest}" | cut -d' ' -f1)"
out_dir="${cache_root}/otelcol-${hash}"
binary="${out_dir}/otelcol-platform"

if [[ -x "${binary}" ]]; then
    echo "build.sh: reusing cached collector (manifest sha256 ${hash:0:12})" >&2
    echo "${binary}"
    exit 0
fi

# ocb's version equals the collector core version the manifest pins (otlpreceiver line).
ocb_version="$(grep -m1 -oE 'collector/receiver/otlpreceiver v[0-9]+\.[0-9]+\.[0-9]+' "${manifest}" | cut -d' ' -f2)"
[[ -n "${ocb_version}" ]] || { echo "build.sh: cannot find the otlpreceiver pin in ${manifest}" >&2; exit 2; }
ocb="${cache_root}/bin/ocb-${ocb_version}"
if [[ ! -x "${ocb}" ]]; then
    echo "build.sh: installing ocb ${ocb_version} (go.opentelemetry.io/collector/cmd/builder)" >&2
    mkdir -p "${cache_root}/bin"
    gobin="$(mktemp -d "${cache_root}/bin/.gobin.XXXXXX")"
    GOBIN="${gobin}" go install "go.opentelemetry.io/collector/cmd/builder@${ocb_version}" >&2
    mv -f "${gobin}/builder" "${ocb}"
    rmdir "${gobin}"
fi

mkdir -p "${cache_root}"
work="$(mktemp -d "${cache_root}/.build.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
cp "${manifest}" "${work}/manifest.yaml"

echo "build.sh: building otelcol-platform (cold builds take minutes; output in ${out_dir})" >&2
start=$(date +%s)
(cd "${work}" && "${ocb}" --config manifest.yaml) >&2
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2

mkdir -p "${out_dir}"
# Rename within one filesystem: a concurrent build never sees a half-written binary.
cp "${work}/_build/otelcol-platform" "${out_dir}/.otelcol-platform.$$"
mv -f "${out_dir}/.otelcol-platform.$$" "${binary}"
cp "${manifest}" "${out_dir}/manifest.yaml"
"${binary}" --version >&2
echo "${binary}"
