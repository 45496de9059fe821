#!/bin/sh
# One HTTP/1.1 exchange: `nc -ll -e` runs this per connection with the socket on
# stdin/stdout (stderr is the container's log). Answers with `Connection: close`.
# Shell builtins only on the common path: every fork costs throughput.
t0=$EPOCHREALTIME
CR=$'\r'

IFS=' ' read -r -t 10 method target proto || exit 0
proto=${proto%"$CR"}
len=0
json=
continue=
while IFS= read -r -t 10 line; do
    line=${line%"$CR"}
    [ -z "$line" ] && break
    case $line in
        [Cc]ontent-[Ll]ength:*) len=${line#*:}; len=${len# } ;;
        [Aa]ccept:*application/json*) json=1 ;;
        [Ee]xpect:*100-[Cc]ontinue*) continue=1 ;;
    esac
done
# Drain a request body: unread bytes would make the close a reset.
if [ "$len" -gt 0 ] 2>/dev/null; then
    [ -n "$continue" ] && printf 'HTTP/1.1 100 Continue\r\n\r\n'
    head -c "$len" >/dev/null
fi

# Modes changed while running (AppContainer.set_mode): shell assignments, replaced
# by rename, so a handler reads the old or the new file, never half of one.
[ -f "$APP_STATE/mode" ] && . "$APP_STATE/mode"

path=${target%%\?*}
uri=$path
status=200
exc=none
ctype=application/json
now=${t0%.*}
started=${APP_STARTED%.*}
up=$((now - ${started:-now}))
failing=
[ -n "$FAIL_AFTER" ] && [ "$up" -ge "$FAIL_AFTER" ] && failing=1

# Fold the request log's new lines into the metrics state and print the metrics.
# One scrape at a time (mkdir is atomic); a lock left by a scrape that was killed is
# broken after 5 s. The state (with the log offset) is replaced by rename.
scrape() {
    tries=0
    until mkdir "$APP_STATE/scrape.lock" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -ge 500 ] && rmdir "$APP_STATE/scrape.lock" && tries=0
        usleep 10000
    done
    offset=0
    [ -f "$APP_STATE/metrics" ] && read -r _ offset <"$APP_STATE/metrics"
    dd if="$APP_STATE/requests" iflag=skip_bytes skip="$offset" bs=65536 2>/dev/null |
        awk -v state="$APP_STATE/metrics" -v out="$APP_STATE/metrics.new" \
            -v version="$APP_VERSION" -v started="$APP_STARTED" -v now="$t0" \
            -f /app/metrics.awk
    mv "$APP_STATE/metrics.new" "$APP_STATE/metrics"
    rmdir "$APP_STATE/scrape.lock"
}

fail() {
    status=${ERROR_STATUS:-500}
    exc=IllegalStateException
    body="{\"timestamp\":$now,\"status\":$status,\"error\":\"Internal Server Error\",\"path\":\"$path\"}"
}

case $path in
/actuator/health | /actuator/health/*)
    [ -z "$json" ] && ctype=application/vnd.spring-boot.actuator.v3+json
    if [ -n "$failing" ] || [ "$HEALTH" = down ] || [ "$up" -lt "${HEALTHY_AFTER:-0}" ]; then
        status=503
        body='{"status":"DOWN"}'
    elif [ "$HEALTH" = unknown ]; then
        body='{"status":"UNKNOWN"}'
    else
        body='{"status":"UP","groups":["liveness","readiness"]}'
    fi
    ;;
/actuator/info)
    [ -z "$json" ] && ctype=application/vnd.spring-boot.actuator.v3+json
    body="{\"app\":{\"name\":\"webapp\",\"version\":\"$APP_VERSION\"}}"
    ;;
/actuator/prometheus)
    ctype='text/plain; version=0.0.4; charset=utf-8'
    body=$(scrape)
    ;;
/actuator/metrics)
    [ -z "$json" ] && ctype=application/vnd.spring-boot.actuator.v3+json
    body='{"names":["app.info","http.server.requests","process.uptime"]}'
    ;;
/version)
    body="{\"version\":\"$APP_VERSION\",\"port\":$SERVER_PORT}"
    ;;
/api/*)
    [ "${DELAY_MS:-0}" -gt 0 ] && usleep $((DELAY_MS * 1000))
    if [ -n "$failing" ]; then
        fail
    elif case ",$FAIL_PATHS," in *",$path,"*) true ;; *) false ;; esac; then
        fail
    elif [ "${ERROR_PERCENT:-0}" -gt 0 ] && [ $((RANDOM % 100)) -lt "$ERROR_PERCENT" ]; then
        fail
    else
        case $path in
        /api/public/stats/users) data='{"users":42,"active":7}' ;;
        /api/public/testimonials | /api/public/subscription-plans) data='[]' ;;
        *) data="{\"path\":\"$path\"}" ;;
        esac
        body="{\"code\":200,\"message\":\"ok\",\"data\":$data}"
    fi
    ;;
*)
    status=404
    uri=NOT_FOUND
    body="{\"timestamp\":$now,\"status\":404,\"error\":\"Not Found\",\"path\":\"$path\"}"
    ;;
esac

case $status in
200) outcome=SUCCESS; reason=OK ;;
404) outcome=CLIENT_ERROR; reason="Not Found" ;;
500) outcome=SERVER_ERROR; reason="Internal Server Error" ;;
503) outcome=SERVER_ERROR; reason="Service Unavailable" ;;
2??) outcome=SUCCESS; reason=Success ;;
4??) outcome=CLIENT_ERROR; reason="Client Error" ;;
*) outcome=SERVER_ERROR; reason="Server Error" ;;
esac

t1=$EPOCHREALTIME
us=$((${t1%.*}${t1#*.} - ${t0%.*}${t0#*.}))
# One append per request (O_APPEND, a single short write): concurrent handlers never
# interleave, and the request is counted before its answer leaves. The final "."
# marks a complete line for a scrape that reads while another line is being written.
echo "$method $status $uri $outcome $exc $us ." >>"$APP_STATE/requests"
echo "$t0  INFO 1 --- [nio-$SERVER_PORT-exec] access : $method $target $status ${us}us v$APP_VERSION" >&2

[ "$method" = HEAD ] && hbody= || hbody=$body
printf 'HTTP/1.1 %s %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nX-App-Version: %s\r\nX-App-Port: %s\r\nConnection: close\r\n\r\n%s' \
    "$status" "$reason" "$ctype" "${#body}" "$APP_VERSION" "$SERVER_PORT" "$hbody"
