#!/bin/sh
# PID 1 of the test web app: a Spring-like start-up log, `busybox nc -ll` running
# handler.sh once per connection, and a graceful TERM (stop accepting, let the
# requests in flight finish, exit 0). Every behaviour is chosen by the environment:
# see tests/integration/deploy/README.md.

PORT=${SERVER_PORT:-8520}
export SERVER_PORT=$PORT
export APP_VERSION=${APP_VERSION:-0.0.0}
export APP_STATE=/tmp/app
NC=

log() {
    echo "$EPOCHREALTIME  ${2:-INFO} 1 --- [main] webapp : $1"
}

# Does the listener ($NC) listen on $PORT yet? busybox nc listens on the IPv6
# wildcard (dual stack, so 127.0.0.1 reaches it). The socket in /proc/net/tcp6 (or tcp)
# in state 0A (LISTEN) on the port must be one of nc's own descriptors: on the host
# network another process may hold the port.
listening() {
    hex=$(printf '%04X' "$PORT")
    for table in /proc/net/tcp6 /proc/net/tcp; do
        while read -r _ local _ st _ _ _ _ _ inode _; do
            [ "$st" = 0A ] && [ "${local##*:}" = "$hex" ] || continue
            for fd in /proc/"$NC"/fd/*; do
                [ "$(readlink "$fd")" = "socket:[$inode]" ] && return 0
            done
        done <"$table"
    done
    return 1
}

# Is the listener gone (exited, maybe not reaped yet: a zombie still answers kill -0)?
listener_gone() {
    read -r _ _ state _ <"/proc/$NC/stat" 2>/dev/null || return 0
    [ "$state" = Z ]
}

# Requests still being answered: handler processes (comm is the script's name) and
# children of the listener that have not exec'd their handler yet.
in_flight() {
    for comm in /proc/[0-9]*/comm; do
        read -r name <"$comm" 2>/dev/null || continue
        case $name in handler.sh|nc) return 0 ;; esac
    done
    return 1
}

shutdown() {
    log "Commencing graceful shutdown. Waiting for active requests to complete"
    [ -n "$NC" ] && kill "$NC" 2>/dev/null && wait "$NC" 2>/dev/null
    limit=$((${EPOCHSECONDS} + ${DRAIN_SECONDS:-30}))
    while in_flight; do
        if [ "$EPOCHSECONDS" -ge "$limit" ]; then
            log "Graceful shutdown aborted with one or more requests still active" WARN
            exit 1
        fi
        sleep 0.05
    done
    log "Graceful shutdown complete"
    exit 0
}
trap shutdown TERM INT

log "Starting WebApp v$APP_VERSION using busybox sh with PID $$"
log "The following 1 profile is active: \"${SPRING_PROFILES_ACTIVE:-default}\""
mkdir -p "$APP_STATE"
: >"$APP_STATE/requests"
if [ "${START_DELAY:-0}" != 0 ]; then
    log "Initializing (START_DELAY=${START_DELAY}s)"
    sleep "$START_DELAY" &
    wait $!
fi
export APP_STARTED=$EPOCHREALTIME
log "Tomcat initialized with port $PORT (http)"
# `-ll` makes nc a persistent server; it passes its count of -l to listen(2) as the
# backlog, so "-ll" alone would queue 2 connections and drop SYNs under load.
ls=ll
while [ ${#ls} -lt "${LISTEN_BACKLOG:-128}" ]; do ls=${ls}l; done
nc -"$ls" -p "$PORT" -e /app/handler.sh &
NC=$!
until listening; do
    if listener_gone; then
        log "Web server failed to start. Port $PORT was already in use." ERROR
        exit 1
    fi
    sleep 0.02
done
log "Tomcat started on port $PORT (http) with context path ''"
log "Started WebApp version=$APP_VERSION port=$PORT healthy-after=${HEALTHY_AFTER:-0}s"

if [ -n "$EXIT_AFTER" ]; then
    sleep "$EXIT_AFTER" &
    wait $!
    log "Application run failed: exiting with ${EXIT_CODE:-1} (EXIT_AFTER=${EXIT_AFTER}s)" ERROR
    kill "$NC" 2>/dev/null
    exit "${EXIT_CODE:-1}"
fi
wait "$NC"
log "The web server stopped unexpectedly" ERROR
exit 1
