#!/usr/bin/env bash
# What the browser test of the recommendation page needs (tests/test_recommend.py::test_html_page_*): Debian's
# chromium and the playwright driver from PyPI. No browser is ever downloaded: the test launches /usr/bin/chromium
# (executable_path). Without either, that test skips and says why; so a failed install here is not fatal.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
    || echo "browser.sh: could not install chromium; the page test will skip" >&2
fi
make install >/dev/null
.venv/bin/python -c "import playwright" 2>/dev/null || .venv/bin/python -m pip install -q playwright \
  || echo "browser.sh: could not install playwright; the page test will skip" >&2
exit 0
