#!/bin/sh
# Keep the NetCut agent running on a board without systemd (installed by `netcut-host fleet provision`).
# Usage: netcut-agent-supervise.sh INSTALL_DIR [netcut-agent serve options...]
# Writes INSTALL_DIR/agent.pid (this supervisor's pid, also its process group); restarts the agent
# 5 s after it exits; SIGTERM stops both. Logs go wherever stdout/stderr point (agent.log).
dir=$1
shift
echo $$ > "$dir/agent.pid"
child=
stop() {
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
    rm -f "$dir/agent.pid"
    exit 0
}
trap stop TERM INT HUP
while :; do
    PYTHONUNBUFFERED=1 "$dir/venv/bin/netcut-agent" serve "$@" &
    child=$!
    wait "$child"
    echo "netcut-agent exited with status $?; restarting in 5 s" >&2
    sleep 5 &
    wait $!
done
