# Sourced by scripts/test: make sure Debian's chromium is at /usr/bin/chromium for the Playwright
# page tests (tests/test_pages.py). `playwright install` cannot download here, so the browser comes
# from apt. Never aborts the caller: if it cannot install, it says so and the browser test FAILS
# with the same message (it does not skip).
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    _browser_sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1; then _browser_sudo=(sudo -n); fi
    fi
    echo "installing chromium (Debian package) for the browser tests ..."
    if ! "${_browser_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends chromium >/dev/null 2>&1; then
      # a stale package index is the usual cause: refresh it once and retry
      "${_browser_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
      if ! "${_browser_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends chromium >/dev/null 2>&1; then
        echo "warning: 'apt-get install chromium' failed (are you root or a passwordless sudoer?);" \
             "the browser test in tests/test_pages.py will fail" >&2
      fi
    fi
    unset _browser_sudo
  else
    echo "warning: /usr/bin/chromium is missing and apt-get is not available: install Debian's" \
         "chromium by hand; the browser test in tests/test_pages.py will fail" >&2
  fi
fi
