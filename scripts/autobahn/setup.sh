#!/usr/bin/env bash
# Installs the Autobahn test suite's `wstest` (Python 2 code) into a prefix of its own.
# Usage: scripts/autobahn/setup.sh [PREFIX]   (default $AUTOBAHN_PREFIX, else /opt/autobahn)
#
# Debian bookworm has no Python 2: CPython 2.7 comes from Debian bullseye's .debs (fetched with apt
# through a sources list of our own, on the machine's Debian mirror) unpacked with `dpkg -x` under
# PREFIX, so nothing is installed into the system. pip 20.3.4 (the last for 2.7) then installs the
# pinned packages below from PyPI, pyOpenSSL and service_identity included so wstest speaks wss://.
# Gives PREFIX/bin/python2.7 and PREFIX/bin/wstest. A second run checks the install and stops;
# FORCE=1 redoes it. Needs apt-get, dpkg, gcc (for wsaccel) and python3 with pip (to fetch pip's wheel).
# Environment: AUTOBAHN_DEBIAN_MIRROR (when the machine's apt sources name no Debian mirror).
set -euo pipefail

prefix=${1:-${AUTOBAHN_PREFIX:-/opt/autobahn}}
python3=${PYTHON3:-python3}

pip_wheel=pip-20.3.4-py2.py3-none-any.whl
pip_wheel_sha256=217ae5161a0e08c0fb873858806e3478c9775caffce5168b50ec885e358c199d
# autobahntestsuite's own pins and everything they pull in, resolved once for Python 2.7.
# pyOpenSSL, cryptography (3.3.2: the last with cp27 wheels) and service-identity give wss://.
requirements="
autobahntestsuite==25.10.1 autobahn==0.10.9 txaio==2.1.0 Twisted==19.10.0 zope.interface==4.6.0
incremental==16.10.1 constantly==15.1.0 Automat==22.10.0 attrs==21.4.0 hyperlink==21.0.0 idna==2.10
PyHamcrest==1.9.0 typing==3.10.0.0 six==1.16.0 pyOpenSSL==19.1.0 cryptography==3.3.2 cffi==1.15.1
pycparser==2.21 enum34==1.1.10 ipaddress==1.0.23 service-identity==18.1.0 pyasn1==0.5.1
pyasn1-modules==0.3.0 klein==17.10.0 Werkzeug==1.0.1 Jinja2==2.11.3 MarkupSafe==1.1.1 unittest2==1.1.0
traceback2==1.4.0 linecache2==1.0.0 ujson==2.0.3 wsaccel==0.6.6
"
python2_debs="python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7-dev"

say() { echo "autobahn setup: $*"; }
die() {
  echo "autobahn setup: ERROR: $*" >&2
  exit 1
}
show_log_and_die() {  # LOG MESSAGE
  tail -n 30 "$1" >&2
  die "$2 (log above)"
}

case $prefix in /*) ;; *) prefix=$PWD/$prefix ;; esac
prefix=${prefix%/}
case $prefix in
  "" | /usr | /usr/local | /opt | /tmp | /root | /home) die "'$prefix' is not a directory of its own: give e.g. /opt/autobahn" ;;
esac
stamp=$prefix/.hyperws-setup
want_stamp="hyperws-autobahn-1 $(echo "$python2_debs $requirements" | sha256sum | cut -c1-16)"
if [ "${FORCE:-0}" != 1 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ] \
  && "$prefix/bin/wstest" --autobahnversion > /dev/null 2>&1; then
  say "wstest already installed: $prefix/bin/wstest"
  exit 0
fi
if [ -d "$prefix" ] && [ -n "$(ls -A "$prefix")" ] && [ ! -e "$prefix/bin/wstest" ] && [ ! -e "$stamp.partial" ]; then
  die "'$prefix' has files but no bin/wstest: remove it or give another prefix"
fi
for tool in apt-get dpkg dpkg-query sha256sum; do
  command -v "$tool" > /dev/null || die "'$tool' not found: this script needs a Debian machine"
done
mkdir -p "$prefix/bin" "$prefix/debs" || die "cannot create $prefix (root is needed for /opt)"
rm -f "$stamp"
touch "$stamp.partial"
started=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Python 2.7 from bullseye. apt reads a sources list and keeps lists and cache in $tmp only.
mirror=${AUTOBAHN_DEBIAN_MIRROR:-$(
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2> /dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true
)}
[ -n "$mirror" ] || die "no Debian mirror in the apt sources: set AUTOBAHN_DEBIAN_MIRROR"
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bullseye main\n' "$mirror" \
  > "$tmp/bullseye.list"
apt_bullseye=(-o "Dir::Etc::SourceList=$tmp/bullseye.list" -o "Dir::Etc::SourceParts=$tmp/parts"
  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "APT::Sandbox::User=root")
if [ "${FORCE:-0}" = 1 ] || [ ! -e "$prefix/debs/.complete" ]; then
  say "fetching Python 2.7 from Debian bullseye ($mirror)"
  apt-get "${apt_bullseye[@]}" update > "$tmp/apt.log" 2>&1 || show_log_and_die "$tmp/apt.log" "apt-get update (bullseye) failed"
  # The shared libraries Python 2.7 links against that bookworm no longer has (libssl1.1, libffi7):
  # its dependencies, recursively, minus the packages installed here.
  read -ra wanted <<< "$python2_debs"
  todo=("${wanted[@]}")
  while [ ${#todo[@]} -gt 0 ]; do
    deps=$(apt-cache "${apt_bullseye[@]}" depends --no-recommends --no-suggests --no-enhances \
      --no-breaks --no-conflicts --no-replaces "${todo[@]}" 2> /dev/null \
      | awk '$1 ~ /Depends:$/ && $2 !~ /^</ { print $2 }' | sed 's/:any$//' | sort -u)
    todo=()
    for dep in $deps; do
      case " ${wanted[*]} " in *" $dep "*) continue ;; esac
      [ "$(dpkg-query -W -f='${db:Status-Status}' "$dep" 2> /dev/null)" = installed ] && continue
      wanted+=("$dep")
      todo+=("$dep")
    done
  done
  rm -f "$prefix/debs/"*.deb
  (cd "$prefix/debs" && apt-get "${apt_bullseye[@]}" download "${wanted[@]}") > "$tmp/apt.log" 2>&1 \
    || show_log_and_die "$tmp/apt.log" "apt-get download (bullseye) failed"
  touch "$prefix/debs/.complete"
fi
for deb in "$prefix/debs/"*.deb; do
  dpkg -x "$deb" "$prefix/root" || die "dpkg -x $deb failed"
done

# 2. Commands that run the unpacked interpreter with its own libraries and nothing of the system's.
libdir=$(echo "$prefix"/root/usr/lib/*-linux-gnu*)
triplet=${libdir##*/}
cat > "$prefix/bin/python2.7" << EOF
#!/bin/sh
root="$prefix/root"
export LD_LIBRARY_PATH="\$root/usr/lib/$triplet:\$root/lib/$triplet\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONHOME="\$root/usr" PYTHONNOUSERSITE=1
unset PYTHONPATH
exec "\$root/usr/bin/python2.7" "\$@"
EOF
cat > "$prefix/bin/wstest" << EOF
#!/bin/sh
exec "$prefix/bin/python2.7" -c 'import sys; sys.argv[0] = "wstest"; from autobahntestsuite.wstest import run; run()' "\$@"
EOF
chmod 755 "$prefix/bin/python2.7" "$prefix/bin/wstest"
python2=$prefix/bin/python2.7
"$python2" -c 'import ssl, zlib, ctypes, hashlib' 2> "$tmp/py.log" || show_log_and_die "$tmp/py.log" "the unpacked Python 2.7 does not start"

# 3. pip for Python 2.7, from its wheel on PyPI (python3's pip fetches it; its hash is checked).
if ! "$python2" -m pip --version > /dev/null 2>&1; then
  if [ ! -f "$prefix/$pip_wheel" ]; then
    say "fetching $pip_wheel from PyPI"
    "$python3" -m pip download -q --no-deps --only-binary=:all: --python-version 2.7 -d "$tmp" pip==20.3.4 \
      > "$tmp/pip.log" 2>&1 || show_log_and_die "$tmp/pip.log" "cannot fetch $pip_wheel with $python3 -m pip"
    cp "$tmp/$pip_wheel" "$prefix/$pip_wheel"
  fi
  echo "$pip_wheel_sha256  $prefix/$pip_wheel" | sha256sum -c --quiet - || die "$pip_wheel: unexpected sha256"
  # A wheel is a zip archive, and Python runs a package from a zip: pip installs itself.
  "$python2" "$prefix/$pip_wheel/pip" install -q --no-index --no-warn-script-location "$prefix/$pip_wheel" \
    > "$tmp/pip.log" 2>&1 || show_log_and_die "$tmp/pip.log" "installing pip for Python 2.7 failed"
fi

# 4. The suite and its dependencies. wsaccel is built from source against the unpacked headers.
say "installing autobahntestsuite and its pinned dependencies for Python 2.7 from PyPI"
echo "$requirements" | tr ' ' '\n' | grep . > "$prefix/requirements.txt"
export CFLAGS="-I$prefix/root/usr/include/python2.7 -I$prefix/root/usr/include ${CFLAGS:-}"
export CC=${CC:-gcc}
# pip 20.3.4 carries a CA list from 2020: use the system's.
[ -r /etc/ssl/certs/ca-certificates.crt ] && export PIP_CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
"$python2" -m pip install -q --disable-pip-version-check --no-python-version-warning --no-warn-script-location \
  --prefer-binary setuptools==44.0.0 wheel==0.37.1 > "$tmp/pip.log" 2>&1 \
  || show_log_and_die "$tmp/pip.log" "pip install setuptools failed"
"$python2" -m pip install -q --disable-pip-version-check --no-python-version-warning --no-warn-script-location \
  --prefer-binary --no-build-isolation -r "$prefix/requirements.txt" > "$tmp/pip.log" 2>&1 \
  || show_log_and_die "$tmp/pip.log" "pip install of autobahntestsuite failed"
"$python2" -c 'import OpenSSL, service_identity, wsaccel' 2> "$tmp/py.log" || show_log_and_die "$tmp/py.log" "an installed package does not import"

"$prefix/bin/wstest" --autobahnversion > "$tmp/version" 2>&1 || show_log_and_die "$tmp/version" "wstest does not start"
echo "$want_stamp" > "$stamp"
rm -f "$stamp.partial"
say "$(tr '\n' ' ' < "$tmp/version")installed in $(($(date +%s) - started)) s: $prefix/bin/wstest"
