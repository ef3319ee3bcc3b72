#!/usr/bin/env bash
# A virtual microphone for testing the live path: a private PulseAudio daemon whose default source
# "vmic" reads raw audio (s16le, mono, 16 kHz by default) from a FIFO that a feeder writes at real-time
# pace. PortAudio then lists the "pulse" and "default" input devices.
#
#   scripts/virtual_mic.sh start    # start (or reuse) it; prints the environment to use it, for eval
#   scripts/virtual_mic.sh stop     # stop it (nothing to do when it is not running)
#   scripts/virtual_mic.sh status   # exit 0 when it is running with its "vmic" source
#   scripts/virtual_mic.sh env      # print the environment lines only
#
# Every command is idempotent. Settings (environment):
#   STREAMD_VMIC_DIR   runtime directory of this daemon (default /tmp/streamd-vmic-UID); it holds the
#                      socket (pulse/native), the pid file, the log and the FIFO
#   STREAMD_VMIC_FIFO  the FIFO the source reads (default $STREAMD_VMIC_DIR/vmic.fifo); PulseAudio creates
#                      it when the source loads and removes it when the daemon stops
#   STREAMD_VMIC_RATE  sample rate of the FIFO's audio (default 16000)
set -euo pipefail

DIR="${STREAMD_VMIC_DIR:-/tmp/streamd-vmic-$(id -u)}"
FIFO="${STREAMD_VMIC_FIFO:-$DIR/vmic.fifo}"
RATE="${STREAMD_VMIC_RATE:-16000}"
SOURCE=vmic
START_TIMEOUT_S=10

die() {
    echo "virtual_mic: $*" >&2
    exit 1
}

pa() {
    XDG_RUNTIME_DIR="$DIR" PULSE_SERVER="unix:$DIR/pulse/native" "$@"
}

server_up() {
    pa pactl info >/dev/null 2>&1
}

source_loaded() {
    pa pactl list short sources 2>/dev/null | awk '{print $2}' | grep -qx "$SOURCE"
}

print_env() {
    echo "export XDG_RUNTIME_DIR='$DIR'"
    echo "export PULSE_SERVER='unix:$DIR/pulse/native'"
    echo "export STREAMD_VMIC_DIR='$DIR'"
    echo "export STREAMD_VMIC_FIFO='$FIFO'"
    echo "export STREAMD_VMIC_RATE='$RATE'"
}

pipe_source_args() {
    echo "source_name=$SOURCE file=$FIFO format=s16le rate=$RATE channels=1"
}

start() {
    command -v pulseaudio >/dev/null || die "pulseaudio is not installed (apt-get install pulseaudio pulseaudio-utils)"
    command -v pactl >/dev/null || die "pactl is not installed (apt-get install pulseaudio-utils)"
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if server_up; then
        if ! source_loaded; then
            rm -f "$FIFO" # the module creates the FIFO itself and refuses an existing one
            # shellcheck disable=SC2046
            pa pactl load-module module-pipe-source $(pipe_source_args) >/dev/null ||
                die "cannot load the pipe source into the running daemon (see $DIR/pulseaudio.log)"
        fi
    else
        rm -f "$FIFO" "$DIR/pulse/pid"
        # PulseAudio warns when run as root but works; -n skips the user's default.pa.
        pa pulseaudio -n --daemonize=yes --exit-idle-time=-1 --log-target="file:$DIR/pulseaudio.log" \
            -L "module-native-protocol-unix auth-anonymous=1" \
            -L "module-null-sink sink_name=vsink" \
            -L "module-pipe-source $(pipe_source_args)" ||
            die "pulseaudio failed to start (see $DIR/pulseaudio.log)"
        local waited=0
        until server_up; do
            sleep 0.1
            waited=$((waited + 1))
            [ "$waited" -lt $((START_TIMEOUT_S * 10)) ] || die "pulseaudio did not answer within ${START_TIMEOUT_S} s"
        done
    fi
    source_loaded || die "the $SOURCE source did not load (see $DIR/pulseaudio.log)"
    [ -p "$FIFO" ] || die "the FIFO $FIFO was not created"
    pa pactl set-default-source "$SOURCE"
    print_env
}

stop() {
    if [ -f "$DIR/pulse/pid" ] || server_up; then
        pa pulseaudio --kill 2>/dev/null || true
        local waited=0
        while server_up || pa pulseaudio --check 2>/dev/null; do
            sleep 0.1
            waited=$((waited + 1))
            if [ "$waited" -ge 50 ]; then
                # Still there after 5 s: end it by its own pid file.
                local pid
                pid="$(cat "$DIR/pulse/pid" 2>/dev/null || true)"
                [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
                break
            fi
        done
    fi
    rm -f "$FIFO" "$DIR/pulse/pid"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) server_up && source_loaded ;;
env) print_env ;;
*)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
