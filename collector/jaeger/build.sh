#!/usr/bin/env bash
# Build Jaeger (all-in-one, `jaeger` v2 binary) from its Go module, pinned as a `tool`
# in collector/jaeger/go.mod, once per version.
#
# The binary is cached under
#   ${PLATFORM_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/platform-otel}/jaeger-<version>/jaeger
# and reused while go.mod pins the same version. The last line on stdout is the binary
# path; all build output goes to stderr. Needs only Go (GOPROXY/GOFLAGS/GOTOOLCHAIN are
# taken from the environment as they are). Cold builds take minutes.
#
#   JAEGER=$(collector/jaeger/build.sh | tail -n 1)
#   "$JAEGER"            # memory storage; OTLP on :4317/:4318, query API and UI on :16686
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${PLATFORM_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/platform-otel}"

command -v go >/dev/null 2>&1 || { echo "jaeger/build.sh: Go is required (https://go.dev/dl/)" >&2; exit 2; }

version="$(grep -m1 -oE '^\s*github.com/jaegertracing/jaeger v[0-9]+\.[0-9]+\.[0-9]+' "${here}/go.mod" | awk '{print $2}')"
[[ -n "${version}" ]] || { echo "jaeger/build.sh: cannot find the jaeger pin in ${here}/go.mod" >&2; exit 2; }
out_dir="${cache_root}/jaeger-${version}"
binary="${out_dir}/jaeger"

if [[ -x "${binary}" ]]; then
    echo "jaeger/build.sh: reusing cached jaeger ${version}" >&2
    echo "${binary}"
    exit 0
fi

mkdir -p "${out_dir}"
echo "jaeger/build.sh: building jaeger ${version} (cold builds take minutes; output in ${out_dir})" >&2
start=$(date +%s)
tmp="${out_dir}/.jaeger.$$"
trap 'rm -f "${tmp}"' EXIT
(cd "${here}" && go build -trimpath -o "${tmp}" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
# Rename within one filesystem: a concurrent build never sees a half-written binary.
mv -f "${tmp}" "${binary}"
echo "jaeger/build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "${binary}"
