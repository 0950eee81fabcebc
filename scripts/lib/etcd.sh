# Sourced by scripts/test: make sure etcd (Debian's etcd-server) is installed for the multi-agency
# tests (tests/test_cluster.py), which start a real 3-member cluster. Never aborts the caller: if it
# cannot install, it says so and the cluster tests FAIL with the same message (they do not skip).
if ! command -v etcd >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    _etcd_sudo=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then _etcd_sudo=(sudo -n); fi
    echo "installing etcd-server (Debian package) for the multi-agency tests ..."
    if ! "${_etcd_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends etcd-server >/dev/null 2>&1; then
      "${_etcd_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
      if ! "${_etcd_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends etcd-server >/dev/null 2>&1; then
        echo "warning: 'apt-get install etcd-server' failed (are you root or a passwordless" \
             "sudoer?); tests/test_cluster.py will fail" >&2
      fi
    fi
    # Debian starts an etcd service on install; the tests start their own members.
    (command -v systemctl >/dev/null 2>&1 && "${_etcd_sudo[@]}" systemctl stop etcd >/dev/null 2>&1) || true
    unset _etcd_sudo
  else
    echo "warning: etcd is missing and apt-get is not available: install etcd-server by hand;" \
         "tests/test_cluster.py will fail" >&2
  fi
fi
