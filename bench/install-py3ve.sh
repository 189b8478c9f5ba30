#!/bin/sh
# Installs py3-validate-email 1.0.5, the library the callout benchmark compares cbv with.
# Its setup.py downloads a disposable-domain blocklist from GitHub at build time, which fails
# without Internet access; the library's code is installed unchanged, with an empty blocklist
# (the benchmark's .test domains are on no blocklist anyway).
set -eu
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: py3-validate-email==1.0.5 -d "$tmp"
tar -xzf "$tmp/py3-validate-email-1.0.5.tar.gz" -C "$tmp"
sed -i 's/BlacklistUpdater()._install()/LIB_PATH_DEFAULT.mkdir(exist_ok=True); BLACKLIST_FILEPATH_INSTALLED.write_text("")/; s/BLACKLIST_FILEPATH_INSTALLED, BlacklistUpdater)/BLACKLIST_FILEPATH_INSTALLED, BlacklistUpdater, LIB_PATH_DEFAULT)/' \
    "$tmp/py3-validate-email-1.0.5/setup.py"
"$PY" -m pip install --quiet "$tmp/py3-validate-email-1.0.5"
