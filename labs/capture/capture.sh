#!/usr/bin/env bash
# Capture real BGP messages (raw wire bytes) sent by BIRD 2 and FRR.
#
#   sudo labs/capture/capture.sh            # all runs: {bird,frr}-{ebgp,ibgp,as4}
#   sudo labs/capture/capture.sh frr-ibgp   # only the named runs
#
# For each run: two fresh network namespaces joined by a veth, the router under
# test (BIRD or FRR) in one, recorder.py (a passive BGP peer) in the other. The
# recorder stores every message the router sends as NN-<type>.hex, then `recorder.py
# describe` decodes them, checks them against the configuration given to the router and
# writes expected.txt; only a run that passes replaces bgp/tests/data/<run>/ (a failed
# run leaves the old data alone and keeps its files in /tmp/vipr-capture.*).
# Needs root, bird2, frr, python3. KEEP_WORK=1 keeps the temporary configs and logs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DATA=$ROOT/bgp/tests/data
RECORDER=$HERE/recorder.py
ALL_RUNS="bird-ebgp bird-ibgp bird-as4 frr-ebgp frr-ibgp frr-as4"

[ "$(id -u)" = 0 ] || { echo "capture.sh: must run as root" >&2; exit 1; }
for b in bird /usr/lib/frr/zebra /usr/lib/frr/bgpd python3 ip; do
    command -v "$b" >/dev/null || { echo "capture.sh: $b not found (apt-get install bird2 frr python3 iproute2)" >&2; exit 1; }
done

RUNS=${*:-$ALL_RUNS}
for r in $RUNS; do
    case " $ALL_RUNS " in *" $r "*) ;; *) echo "capture.sh: unknown run '$r' (one of: $ALL_RUNS)" >&2; exit 1 ;; esac
done

# --- fixed test addresses (documentation / private ranges only) ------------
R4=10.77.0.1 C4=10.77.0.2                 # router under test / recorder
R6=2001:db8:77::1 C6=2001:db8:77::2
R_MAC=02:00:00:77:00:01 C_MAC=02:00:00:77:00:02   # fixed MACs -> fixed link-local addresses
R_LL=fe80::ff:fe77:1                      # EUI-64 of R_MAC
RID=$R4 CID=$C4
HOLD=90
MED=50 COMM=65010:100 LCOMM=65010:1:2

TAG=vcap$$
NS_R=$TAG-rtr NS_C=$TAG-rec
WORK=$(mktemp -d /tmp/vipr-capture.XXXXXX)
chmod 755 "$WORK"
REC_PID=""
DAEMON_PIDFILES=()

stop_daemons() {
    local f p i
    for ((i = ${#DAEMON_PIDFILES[@]} - 1; i >= 0; i--)); do   # reverse start order
        f=${DAEMON_PIDFILES[$i]}
        [ -s "$f" ] || continue
        p=$(cat "$f")
        kill "$p" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || continue 2
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
    done
    DAEMON_PIDFILES=()
}

teardown_net() {
    ip netns del "$NS_R" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    if [ -n "$REC_PID" ]; then kill "$REC_PID" 2>/dev/null || true; fi
    stop_daemons
    teardown_net
    if [ "${KEEP_WORK:-0}" = 1 ] || [ $rc != 0 ]; then
        echo "capture.sh: configs and logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT

setup_net() {
    teardown_net
    ip netns add "$NS_R"
    ip netns add "$NS_C"
    for ns in "$NS_R" "$NS_C"; do
        # no DAD at all: the global and the link-local addresses are usable at once
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
        ip -n "$ns" link set lo up
    done
    ip link add name veth0 netns "$NS_R" address $R_MAC type veth \
        peer name veth0 netns "$NS_C" address $C_MAC
    ip -n "$NS_R" addr add $R4/24 dev veth0
    ip -n "$NS_R" addr add $R6/64 dev veth0 nodad
    ip -n "$NS_C" addr add $C4/24 dev veth0
    ip -n "$NS_C" addr add $C6/64 dev veth0 nodad
    ip -n "$NS_R" link set veth0 up
    ip -n "$NS_C" link set veth0 up
}

# scenario -> router AS, recorder AS, prefixes, local pref
scenario_params() {
    V4=203.0.113.10/32,203.0.113.11/32
    V6=2001:db8:ff::10/128
    LP=""
    case $1 in
        ebgp) R_AS=65010 C_AS=65020 ;;
        ibgp) R_AS=65010 C_AS=65010 LP=200 ;;
        as4)  R_AS=4200000001 C_AS=65020 V4=203.0.113.10/32 V6="" ;;
    esac
}

# ----------------------------------------------------------------- BIRD 2 --
bird_conf() {
    local routes4="" routes6="" p
    for p in ${V4//,/ }; do routes4+="    route $p blackhole;"$'\n'; done
    for p in ${V6//,/ }; do routes6+="    route $p blackhole;"$'\n'; done
    cat <<EOF
router id $RID;
log "$W/bird.log" all;
protocol device { }
protocol static static4 {
    ipv4;
$routes4}
EOF
    if [ -n "$V6" ]; then cat <<EOF
protocol static static6 {
    ipv6;
$routes6}
EOF
    fi
    cat <<EOF
filter to_recorder {
    bgp_origin = ORIGIN_IGP;
    bgp_med = $MED;
    bgp_community.add((${COMM%%:*},${COMM#*:}));
    bgp_large_community.add((${LCOMM//:/,}));
EOF
    if [ -n "$LP" ]; then echo "    bgp_local_pref = $LP;"; fi
    cat <<EOF
    accept;
}
protocol bgp recorder {
    local $R4 as $R_AS;
    neighbor $C4 as $C_AS;
    hold time $HOLD;
    connect delay time 1;
    connect retry time 1;
    error wait time 1, 5;
    ipv4 { import none; export filter to_recorder; };
EOF
    # IPv6 routes over the IPv4 session: BIRD needs an explicit IPv6 next hop
    if [ -n "$V6" ]; then echo "    ipv6 { import none; export filter to_recorder; next hop address $R6; };"; fi
    echo "}"
}

start_bird() {
    bird_conf > "$W/bird.conf" || return 1
    DAEMON_PIDFILES+=("$W/bird.pid")
    ip netns exec "$NS_R" bird -c "$W/bird.conf" -s "$W/bird.ctl" -P "$W/bird.pid"
}

router_state_bird() {
    birdc -s "$W/bird.ctl" show protocols all recorder > "$W/router-state.txt" 2>&1 || true
}

ROUTER_NAME_bird() { bird --version 2>&1 | sed -n 1p; }

# -------------------------------------------------------------------- FRR --
frr_conf() {
    local p
    cat <<EOF
hostname vipr-frr
domainname capture.test
log file $W/frr/bgpd.log debugging
!
route-map ORIGINATE permit 10
 set origin igp
 set metric $MED
 set community $COMM
 set large-community $LCOMM
EOF
    if [ -n "$LP" ]; then echo " set local-preference $LP"; fi
    cat <<EOF
!
router bgp $R_AS
 bgp router-id $RID
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor $C4 remote-as $C_AS
 neighbor $C4 timers 30 $HOLD
 neighbor $C4 timers connect 1
 !
 address-family ipv4 unicast
EOF
    for p in ${V4//,/ }; do echo "  network $p route-map ORIGINATE"; done
    echo "  neighbor $C4 activate"
    echo " exit-address-family"
    if [ -n "$V6" ]; then
        echo " address-family ipv6 unicast"
        for p in ${V6//,/ }; do echo "  network $p route-map ORIGINATE"; done
        echo "  neighbor $C4 activate"
        echo " exit-address-family"
    fi
}

start_frr() {
    local R=$W/frr
    mkdir -p "$R"
    printf 'hostname vipr-frr\nlog file %s/zebra.log\n' "$R" > "$R/zebra.conf"
    frr_conf > "$R/bgpd.conf" || return 1
    chown -R frr:frr "$R"
    DAEMON_PIDFILES+=("$R/zebra.pid")
    ip netns exec "$NS_R" /usr/lib/frr/zebra -d -f "$R/zebra.conf" -i "$R/zebra.pid" -z "$R/zserv.api" --vty_socket "$R" \
        2>> "$R/zebra.stderr" || return 1
    for _ in $(seq 50); do [ -S "$R/zserv.api" ] && break; sleep 0.1; done
    DAEMON_PIDFILES+=("$R/bgpd.pid")
    ip netns exec "$NS_R" /usr/lib/frr/bgpd -d -f "$R/bgpd.conf" -i "$R/bgpd.pid" -z "$R/zserv.api" --vty_socket "$R" \
        2>> "$R/bgpd.stderr" || return 1
}

router_state_frr() {
    vtysh --vty_socket "$W/frr" -c "show bgp neighbor $C4" > "$W/router-state.txt" 2>&1 || true
}

ROUTER_NAME_frr() { echo "FRR $(/usr/lib/frr/bgpd --version 2>&1 | sed -n 1p | sed 's/^bgpd version //')"; }

# ------------------------------------------------------------------ a run --
run_one() {
    local run=$1 impl=${1%%-*} scen=${1#*-}
    local out=$DATA/$run rc=0
    W=$WORK/$run
    mkdir -p "$W"
    chmod 755 "$W"
    scenario_params "$scen"
    local tmp=$W/data     # copied to $out only once the run passed its check
    setup_net

    ip netns exec "$NS_C" python3 "$RECORDER" listen --addr $C4 --asn $C_AS --router-id $CID \
        --hold $HOLD --out "$tmp" --ready-file "$W/ready" > "$W/recorder.log" 2>&1 &
    REC_PID=$!
    for _ in $(seq 50); do [ -e "$W/ready" ] && break; sleep 0.1; done
    [ -e "$W/ready" ] || { cat "$W/recorder.log" >&2; return 1; }

    if ! "start_$impl"; then
        echo "capture.sh: $run: could not start $impl, see $W" >&2
        kill "$REC_PID" 2>/dev/null || true
        wait "$REC_PID" 2>/dev/null || true
        REC_PID=""
        stop_daemons
        teardown_net
        return 1
    fi
    wait "$REC_PID" || rc=$?
    REC_PID=""
    "router_state_$impl"
    stop_daemons
    teardown_net
    if [ $rc != 0 ]; then
        echo "capture.sh: $run: recorder failed (rc=$rc), see $W" >&2
        cat "$W/recorder.log" >&2
        return 1
    fi

    # did the router understand our NOTIFICATION 6/2 with its RFC 9003 message?
    echo "   router log: $(grep -h -i -m1 'shutdown' "$W/bird.log" "$W/frr/bgpd.log" 2>/dev/null | cut -c1-160)"

    local nh6="" note=""
    if [ -n "$V6" ]; then
        # global + link-local of the router's veth0 (32-byte next hop, RFC 2545): the peer
        # is on the same link. Exception seen: BIRD on the iBGP session sends only the
        # global address (it adds the link-local one only to direct eBGP peers).
        nh6="$R6,$R_LL"
        note="global = the configured $R6; link-local = EUI-64 of the fixed MAC $R_MAC"
        if [ "$run" = bird-ibgp ]; then
            nh6=$R6
            note="global only: BIRD treats iBGP as multihop by default and adds a link-local next hop only on direct sessions"
        fi
    fi
    python3 "$RECORDER" describe "$tmp" --name "$run" --router-name "$("ROUTER_NAME_$impl")" \
        --router-as $R_AS --router-id $RID --recorder-as $C_AS --peer-addr $C4 --hold $HOLD \
        --v4 "$V4" --v6 "$V6" --nh4 $R4 --nh6 "$nh6" --nh6-note "$note" --med $MED ${LP:+--local-pref $LP} \
        --community $COMM --large-community $LCOMM || { echo "capture.sh: $run: check failed, see $tmp/expected.txt" >&2; return 1; }
    rm -rf "$out"
    mkdir -p "$out"
    cp "$tmp"/* "$out"/
}

failed=""
for run in $RUNS; do
    echo "== $run"
    run_one "$run" || failed+=" $run"
done

echo
echo "Summary (bgp/tests/data):"
for run in $RUNS; do
    out=$DATA/$run
    [ -d "$out" ] || continue
    line=""
    for f in "$out"/*.hex; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .hex)
        line+=" ${n#*-}($(( $(tr -d '\n' < "$f" | wc -c) / 2 )))"
    done
    printf '  %-10s%s\n' "$run" "$line"
done
if [ -n "$failed" ]; then
    echo "FAILED:$failed" >&2
    exit 1
fi
echo "all runs OK"
