#!/bin/sh
# What the test suite needs from Debian beside the Python packages: Chromium for the browser tests,
# Fashion-MNIST for its end-to-end tests, and qemu-user to run the int8 check on an emulated CPU
# without AVX-512 (whatever CPU this machine has). Installs what is missing where apt-get can run;
# elsewhere prints one line naming the packages and the command (the tests that need them then fail
# in CI and are skipped, with that reason, outside it).
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || missing="$missing dataset-fashion-mnist"
command -v qemu-x86_64 >/dev/null 2>&1 || missing="$missing qemu-user"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages for the test suite:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    exit $?
fi
echo "make test: the suite needs Debian's$missing; install them with: sudo apt-get install$missing" >&2
[ -z "$CI" ]  # in CI a missing piece fails the run
