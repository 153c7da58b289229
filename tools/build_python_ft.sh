#!/usr/bin/env bash
# Provide a free-threaded CPython (3.13t) and a virtual environment with fulmen on it.
#
# The interpreter is built from Debian's python3.13 source package, fetched with apt's source
# packages (the upstream tarball it carries, without Debian's packaging patches), configured with
# --disable-gil, and cached outside the repository, keyed by the source version, so that a machine
# builds it once. Then VENV (default .venv-ft) gets fulmen with its standard extra and the test tools
# of its dev dependency group.
#
# Idempotent: a second run finds the cached build and an up-to-date venv and does nothing. Every
# network or build step is bounded in time. Prints the interpreter's path on its last line.
#
# Environment: FT_PYTHON_VERSION (default 3.13), FT_DEBIAN_SUITE (default trixie, the Debian
# release whose source index carries python$FT_PYTHON_VERSION), FT_CACHE (default
# ~/.cache/fulmen/python3.13t), FT_VENV (default .venv-ft).
set -euo pipefail

PYTHON_VERSION=${FT_PYTHON_VERSION:-3.13}
SOURCE_PACKAGE=python$PYTHON_VERSION
SUITE=${FT_DEBIAN_SUITE:-trixie}
CACHE=${FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fulmen/python${PYTHON_VERSION}t}
VENV=${FT_VENV:-.venv-ft}
SOURCES_FILE=/etc/apt/sources.list.d/fulmen-python-source.sources
BUILD_DEPENDENCIES=(
    build-essential pkg-config dpkg-dev
    libssl-dev zlib1g-dev libbz2-dev liblzma-dev libzstd-dev libffi-dev libsqlite3-dev
    libreadline-dev libncurses-dev libgdbm-dev uuid-dev libexpat1-dev
)

say() { echo "build_python_ft: $*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "needs root (or sudo) to run: $*"
    fi
}

# Debian's source index for SUITE: a deb-src entry signed by the archive key, as the binary ones.
ensure_source_index() {
    if apt-get source --print-uris "$SOURCE_PACKAGE/$SUITE" >/dev/null 2>&1; then
        return
    fi
    if [ ! -f "$SOURCES_FILE" ]; then
        say "adding Debian's $SUITE source index ($SOURCES_FILE)"
        as_root tee "$SOURCES_FILE" >/dev/null <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    as_root timeout 600 apt-get update -q >&2
    apt-get source --print-uris "$SOURCE_PACKAGE/$SUITE" >/dev/null 2>&1 \
        || die "Debian's $SUITE has no $SOURCE_PACKAGE source package"
}

# Lines "URL FILE SIZE SHA256:HEX" of the source package's files, from the signed index.
source_files() {
    apt-get source --print-uris "$SOURCE_PACKAGE/$SUITE" 2>/dev/null | sed -n "s/^'\([^']*\)' /\1 /p"
}

ensure_build_dependencies() {
    local missing=()
    for package in "${BUILD_DEPENDENCIES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing build dependencies: ${missing[*]}"
        as_root timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

# Download the source package and check every file against the SHA-256 of the signed index (apt
# checks them too; this makes the check visible and independent of apt's settings), then unpack the
# upstream tarball (dpkg-source checks it against the .dsc's strong checksums).
fetch_source() {
    local workdir=$1 files
    files=$(source_files)
    [ -n "$files" ] || die "no file listed for $SOURCE_PACKAGE/$SUITE"
    (cd "$workdir" && timeout 900 apt-get source -q --download-only \
        -o APT::Get::AllowUnauthenticated=false "$SOURCE_PACKAGE/$SUITE" >&2)
    while read -r _url file _size hash; do
        case $hash in
            SHA256:*) ;;
            *) die "the index gives no SHA-256 for $file (got '$hash')" ;;
        esac
        echo "${hash#SHA256:}  $workdir/$file" | sha256sum --check --quiet - \
            || die "checksum mismatch for $file"
    done <<<"$files"
    say "source files match the SHA-256 sums of Debian's signed $SUITE index"
    (cd "$workdir" && dpkg-source --require-strong-checksums --skip-patches -x ./*.dsc src >&2)
}

build_interpreter() {
    local version=$1 prefix=$2 workdir
    rm -rf "$CACHE"/build.*  # left by an interrupted run
    workdir=$(mktemp -d "$CACHE/build.XXXXXX")
    chmod 755 "$workdir"  # apt downloads as its own unprivileged user
    fetch_source "$workdir"
    say "building CPython $version with --disable-gil (about 5 minutes on 2 cores)"
    (
        cd "$workdir/src"
        log=$workdir/build.log
        {
            timeout 900 ./configure --prefix="$prefix" --disable-gil --with-ensurepip=install \
                && timeout 2400 make -j"$(nproc)" \
                && timeout 900 make install DESTDIR="$workdir/stage"
        } >"$log" 2>&1 || { tail -40 "$log" >&2; die "the build failed (log: $log)"; }
    )
    # The build lands in its final place at once: an interrupted build leaves no half interpreter.
    mv "$workdir/stage$prefix" "$prefix"
    rm -rf "$workdir"
}

interpreter_works() {
    "$1" -c 'import sys, sysconfig, ssl, zlib, ctypes; assert sysconfig.get_config_var("Py_GIL_DISABLED")' \
        2>/dev/null
}

# What pip may build from source on the free-threaded interpreter: C extensions without a cp3XXt wheel.
# Everything else comes as a wheel: building the Rust ones (watchfiles, pydantic-core, cryptography)
# would need crates.io, and an older release with a free-threaded wheel is better than none.
PIP_BINARIES=(--only-binary :all: --no-binary httptools,uvloop,pyyaml)

# The test dependencies: pyproject's dev dependency group (PEP 735) less the linters, which run on the
# main venv.
test_requirements() {
    "$1" - <<'EOF'
import re, tomllib
with open("pyproject.toml", "rb") as file:
    group = tomllib.load(file)["dependency-groups"]["dev"]
for requirement in group:
    name = re.split(r"[^A-Za-z0-9_.-]", requirement, maxsplit=1)[0].lower()
    if name not in {"mypy", "ruff"} and not name.startswith("types-"):
        print(requirement)
EOF
}

# The venv holds fulmen (editable) with its standard extra and the test dependencies that exist for
# this interpreter (the tests that need a missing one skip); redone when the interpreter or
# pyproject.toml changes.
ensure_venv() {
    local python=$1 key missing=()
    key="$("$python" -VV | tr -d '\n') $(sha256sum pyproject.toml | cut -c1-16)"
    if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$key" ]; then
        return
    fi
    say "making $VENV"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    local pip=(timeout 1200 "$VENV/bin/python" -m pip install -q "${PIP_BINARIES[@]}")
    "${pip[@]}" --upgrade pip >&2
    "${pip[@]}" -e '.[standard]' >&2
    while read -r requirement; do
        "${pip[@]}" "$requirement" >"$VENV/pip.log" 2>&1 || missing+=("$requirement")
    done < <(test_requirements "$VENV/bin/python")
    if [ ${#missing[@]} -gt 0 ]; then
        say "not installable on $("$python" -V) here (no free-threaded wheel): ${missing[*]}"
    fi
    echo "$key" >"$VENV/.installed"
}

main() {
    [ -f pyproject.toml ] || die "run from the repository root"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    timeout 3600 flock 9 || die "another build holds $CACHE/.lock"
    ensure_source_index
    local version prefix python
    version=$(source_files | sed -n "s/.* ${SOURCE_PACKAGE}_\(.*\)\.dsc .*/\1/p" | head -1)
    [ -n "$version" ] || die "cannot read the version of $SOURCE_PACKAGE/$SUITE"
    prefix="$CACHE/$version"
    python="$prefix/bin/python${PYTHON_VERSION}t"
    if ! interpreter_works "$python"; then
        rm -rf "$prefix"
        ensure_build_dependencies
        build_interpreter "$version" "$prefix"
        interpreter_works "$python" || die "the built interpreter at $python does not work"
    fi
    ensure_venv "$python"
    echo "$python"
}

main "$@"
