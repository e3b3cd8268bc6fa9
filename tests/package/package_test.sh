#!/usr/bin/env bash
# The Debian package, as an operator gets it (issue 19): made with cpack from
# this build (the man pages and changelog first), unpacked with dpkg -x, and
# the demo run against the unpacked programs alone: nvsd, nvs, the routers
# and nvs-stdio-bridge from the package's /usr/bin, router-c from its
# /usr/share. lintian finds no error or warning in it. Usage: package_test.sh BUILD_DIR
set -euo pipefail
build=$1
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/nvs-package-test-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "package_test: $*" >&2; exit 1; }

cmake --build "$build" --target nvs_package_docs >/dev/null
(cd "$build" && cpack -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$work"/out/nvs_*.deb 2>/dev/null | head -1 || true)
[[ -f $deb ]] || fail "no .deb in $work/out"
echo "package: $deb ($(stat -c %s "$deb") bytes)"

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/nvsd ./usr/bin/nvs ./usr/bin/nvs-videohub ./usr/bin/nvs-stdio-bridge ./usr/bin/router-a \
            ./usr/bin/router-b ./usr/share/nvs/router-c/router_c.py ./usr/lib/systemd/system/nvsd.service \
            ./etc/nvs/nvsd.json ./usr/share/man/man1/nvsd.1.gz ./usr/share/man/man1/nvs.1.gz \
            ./usr/share/man/man1/nvs-videohub.1.gz ./usr/share/man/man1/nvs-stdio-bridge.1.gz \
            ./usr/share/man/man1/router-a.1.gz ./usr/share/man/man1/router-b.1.gz ./usr/share/doc/nvs/copyright \
            ./usr/share/doc/nvs/examples/prometheus/nvs-alerts.yml; do
  grep -q " $path\$" <<<"$contents" || fail "the package has no $path"
done
dpkg-deb -f "$deb" Depends | grep -q python3 || fail "the package does not depend on python3 (router-c)"
[[ $(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles) == /etc/nvs/nvsd.json ]] || fail "/etc/nvs/nvsd.json is not a conffile"

root=$work/root
dpkg -x "$deb" "$root"
# The installed example config names the installed programs.
grep -q '"/usr/bin/router-a"' "$root/etc/nvs/nvsd.json" || fail "the example config does not name /usr/bin/router-a"
"$root/usr/bin/nvsd" --config "$root/etc/nvs/nvsd.json" --check >/dev/null 2>"$work/check.log" ||
  { cat "$work/check.log" >&2; fail "nvsd --check refuses the packaged config"; }
for page in nvs nvs-stdio-bridge router-a router-b; do
  zcat "$root/usr/share/man/man1/$page.1.gz" | grep -q '^\.SH' || fail "$page.1 is not a man page"
done

# The demo, against the unpacked programs only.
NVS_DEMO_BIN=$root/usr/bin NVS_DEMO_ROUTER_C=$root/usr/share/nvs/router-c/router_c.py NVS_DEMO_OUT=$work/reports \
  "$source_dir/scripts/demo" >"$work/demo.log" 2>&1 || { cat "$work/demo.log" >&2; fail "the demo failed"; }
for expected in "quarantined" "the failures are reproduced" "probes still FAIL"; do
  grep -q "$expected" "$work/demo.log" || { cat "$work/demo.log" >&2; fail "the demo did not say '$expected'"; }
done
[[ -s $work/reports/replay.html && -s $work/reports/quarantine.html ]] || fail "the demo wrote no reports"
echo "demo against the unpacked programs: ok"

command -v lintian >/dev/null || fail "lintian is missing (scripts/bootstrap installs it)"
# (Warnings too: every program has its man page; lintian's own notice that
# it runs as root is not about the package.)
lintian --fail-on error,warning "$deb" >"$work/lintian.log" 2>&1 ||
  { cat "$work/lintian.log" >&2; fail "lintian found errors or warnings"; }
grep -v 'root privileges' "$work/lintian.log" || true
echo "lintian: no errors, no warnings"
