#!/usr/bin/env bash
# Build a CPU-only Ollama server from its Go module, once per version, for the tests
# that run the real `ollama` client against a real server (tests/test_ollama_real.py).
#
# The binary is cached under
#   ${PLATFORM_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/platform-otel}/ollama-<version>/ollama
# and reused while the version is unchanged. The last line on stdout is the binary path;
# all build output goes to stderr (like collector/build.sh).
#
# `go install github.com/ollama/ollama@<version>` compiles the vendored llama.cpp with cgo.
# The Go module zip leaves out three header-only libraries llama.cpp includes; they come from
#   - Debian packages nlohmann-json3-dev and libstb-dev (installed with apt-get when missing
#     and running as root; otherwise the script stops and says what to install), and
#   - miniaudio.h from the `miniaudio` source distribution on PyPI (pip download).
# A cold build takes about 8 minutes on 2 cores; with a warm Go build cache about 3.
#
#   BIN=$(scripts/build_ollama.sh | tail -n 1)
#   OLLAMA_HOST=127.0.0.1:11555 "$BIN" serve
set -euo pipefail

version="${PLATFORM_OTEL_OLLAMA_VERSION:-v0.17.4}"
cache_root="${PLATFORM_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/platform-otel}"
out_dir="${cache_root}/ollama-${version}"
binary="${out_dir}/ollama"

if [[ -x "${binary}" ]]; then
    echo "build_ollama.sh: reusing cached ollama ${version}" >&2
    echo "${binary}"
    exit 0
fi

command -v go >/dev/null 2>&1 || { echo "build_ollama.sh: Go is required (https://go.dev/dl/)" >&2; exit 2; }

# 1. Header-only libraries from Debian.
need_apt=()
[[ -f /usr/include/nlohmann/json_fwd.hpp ]] || need_apt+=(nlohmann-json3-dev)
[[ -f /usr/include/stb/stb_image.h ]] || need_apt+=(libstb-dev)
if (( ${#need_apt[@]} )); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "build_ollama.sh: installing ${need_apt[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >&2; }
    else
        echo "build_ollama.sh: missing headers; install the Debian packages: ${need_apt[*]}" >&2
        exit 2
    fi
fi

# 2. miniaudio.h from the PyPI source distribution (cached once).
inc_dir="${cache_root}/ollama-headers"
if [[ ! -f "${inc_dir}/miniaudio/miniaudio.h" ]]; then
    echo "build_ollama.sh: fetching miniaudio.h from the miniaudio sdist on PyPI" >&2
    py="$(command -v python3 || command -v python)"
    tmp="$(mktemp -d)"
    "${py}" -m pip download -q --no-deps --no-binary :all: -d "${tmp}" miniaudio >&2
    tar -xzf "${tmp}"/miniaudio-*.tar.gz -C "${tmp}"
    header="$(find "${tmp}" -path '*/miniaudio/miniaudio.h' | head -n 1)"
    [[ -n "${header}" ]] || { echo "build_ollama.sh: miniaudio.h not found in the sdist" >&2; exit 2; }
    mkdir -p "${inc_dir}/miniaudio"
    cp "${header}" "${inc_dir}/miniaudio/miniaudio.h"
    rm -rf "${tmp}"
fi

# 3. go install into a private GOBIN, then move into place atomically.
mkdir -p "${cache_root}"
gobin="$(mktemp -d "${cache_root}/.ollama-build.XXXXXX")"
trap 'rm -rf "${gobin}"' EXIT
echo "build_ollama.sh: building github.com/ollama/ollama@${version} (cold builds take ~8 minutes)" >&2
start=$(date +%s)
CGO_ENABLED=1 CGO_CPPFLAGS="-I${inc_dir} ${CGO_CPPFLAGS:-}" GOBIN="${gobin}" \
    go install "github.com/ollama/ollama@${version}" >&2
echo "build_ollama.sh: built in $(( $(date +%s) - start ))s" >&2

mkdir -p "${out_dir}"
cp "${gobin}/ollama" "${out_dir}/.ollama.$$"
mv -f "${out_dir}/.ollama.$$" "${binary}"
"${binary}" --version >&2 || true
echo "${binary}"
