#!/usr/bin/env bash
# Makes sure the brokers of the scale-out tests are up: Redis on 127.0.0.1:$REDIS_PORT (6379) and NATS with
# JetStream on 127.0.0.1:$NATS_PORT (4222). Starts one that is down and says so; fails, naming it, when it
# cannot (the tests that need a broker fail rather than skip without it).
set -euo pipefail

redis_port=${REDIS_PORT:-6379}
nats_port=${NATS_PORT:-4222}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_listening() {
    for _ in $(seq 100); do
        listening "$1" && return 0
        sleep 0.1
    done
    return 1
}

fail() {
    echo "error: $*" >&2
    exit 1
}

if ! listening "$redis_port"; then
    echo "Redis is not running on 127.0.0.1:$redis_port: starting it"
    command -v redis-server >/dev/null || fail "redis-server is not installed (apt-get install redis-server)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null
    wait_listening "$redis_port" || fail "Redis did not start on 127.0.0.1:$redis_port"
fi

if ! listening "$nats_port"; then
    echo "NATS is not running on 127.0.0.1:$nats_port: starting it"
    nats=$(command -v nats-server || echo /usr/sbin/nats-server)
    [ -x "$nats" ] || fail "nats-server is not installed (https://github.com/nats-io/nats-server/releases)"
    # Not start-stop-daemon --exec: it sees any nats-server already running (on another port) as this one.
    setsid "$nats" -a 127.0.0.1 -p "$nats_port" -js >/dev/null 2>&1 </dev/null &
    wait_listening "$nats_port" || fail "NATS did not start on 127.0.0.1:$nats_port"
fi

echo "brokers up: Redis 127.0.0.1:$redis_port, NATS 127.0.0.1:$nats_port"
