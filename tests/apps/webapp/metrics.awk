# Spring Boot's /actuator/prometheus for http.server.requests with
# percentiles-histogram enabled. Each handler appends one line per request to the
# request log (METHOD STATUS URI OUTCOME EXCEPTION MICROSECONDS .); a scrape reads
# only the lines added since the last one (from the byte offset kept in the state
# file, fed on stdin) and folds them into the state: the cost of a scrape does not
# grow with the app's age. A label set appears once a request with it was answered,
# so the 5xx series only exists after the first 5xx, as in Spring.
#
# Variables: state (state file to read), out (new state file to write), version,
# started and now (seconds).
BEGIN {
    nb = split("0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1.0 2.5 5.0 10.0 30.0", le, " ")
    offset = 0
    while ((getline line < state) > 0) {
        f = split(line, v, " ")
        if (v[1] == "offset") { offset = v[2]; continue }
        key = v[1] " " v[2] " " v[3] " " v[4] " " v[5]
        order[++n] = key
        seen[key] = 1
        count[key] = v[6]; sum[key] = v[7]; max[key] = v[8]
        for (i = 1; i <= nb + 1; i++) hits[key, i] = v[8 + i]
    }
    close(state)
    consumed = 0
    done = 0
}
# A line is complete only with its final "."; a line still being written (the last
# one read) is left for the next scrape, and so is everything after it.
done == 0 && NF == 7 && $7 == "." {
    key = $1 " " $2 " " $3 " " $4 " " $5
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    s = $6 / 1000000
    count[key]++
    sum[key] += s
    if (s > max[key]) max[key] = s
    for (i = 1; i <= nb && s > le[i] + 0; i++) ;
    hits[key, i]++
    consumed += length($0) + 1
    next
}
{ done = 1 }
END {
    printf "offset %d\n", offset + consumed > out
    for (k = 1; k <= n; k++) {
        key = order[k]
        line = key " " count[key] " " sprintf("%.6f", sum[key]) " " sprintf("%.6f", max[key])
        for (i = 1; i <= nb + 1; i++) line = line " " (hits[key, i] + 0)
        print line > out
    }
    close(out)

    print "# HELP app_info Version of the running application"
    print "# TYPE app_info gauge"
    printf "app_info{version=\"%s\"} 1.0\n", version
    print "# HELP process_uptime_seconds The uptime of the Java virtual machine"
    print "# TYPE process_uptime_seconds gauge"
    printf "process_uptime_seconds %.3f\n", now - started
    print "# HELP process_start_time_seconds Start time of the process since unix epoch."
    print "# TYPE process_start_time_seconds gauge"
    printf "process_start_time_seconds %.3f\n", started
    print "# HELP http_server_requests_seconds  "
    print "# TYPE http_server_requests_seconds histogram"
    for (k = 1; k <= n; k++) {
        key = order[k]
        split(key, p, " ")
        labels = "error=\"" p[5] "\",exception=\"" p[5] "\",method=\"" p[1] \
            "\",outcome=\"" p[4] "\",status=\"" p[2] "\",uri=\"" p[3] "\""
        c = 0
        for (i = 1; i <= nb; i++) {
            c += hits[key, i]
            printf "http_server_requests_seconds_bucket{%s,le=\"%s\"} %d\n", labels, le[i], c
        }
        printf "http_server_requests_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels, count[key]
        printf "http_server_requests_seconds_count{%s} %d\n", labels, count[key]
        printf "http_server_requests_seconds_sum{%s} %.6f\n", labels, sum[key]
    }
    print "# HELP http_server_requests_seconds_max  "
    print "# TYPE http_server_requests_seconds_max gauge"
    for (k = 1; k <= n; k++) {
        key = order[k]
        split(key, p, " ")
        labels = "error=\"" p[5] "\",exception=\"" p[5] "\",method=\"" p[1] \
            "\",outcome=\"" p[4] "\",status=\"" p[2] "\",uri=\"" p[3] "\""
        printf "http_server_requests_seconds_max{%s} %.6f\n", labels, max[key]
    }
}
