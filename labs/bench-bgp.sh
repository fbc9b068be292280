#!/usr/bin/env bash
# labs/bench-bgp.sh — how long N IPv4 /32s take to reach a receiving BIRD 2, announced by
#   1. vipr's `bgp` crate (bgp/examples/bench_speaker.rs, one Speaker::announce call),
#   2. BIRD 2 as the speaker (N static routes exported over BGP),
#   3. GoBGP, paths added one by one the way kube-vip does (AddPath per VIP), plus batch
#      and CLI variants for reference.
# Prints a table and writes it to labs/out/bench-bgp-<date>.txt. Root only; everything runs
# in two namespaces of its own ("tor" with the receiving BIRD, "node" with the speaker),
# joined by a veth, with 10.201.0.0/24 on the link and the routes taken from 10.128.0.0/9.
#
# Environment knobs:
#   N=100000          routes per run
#   REPEAT=3          repetitions per speaker (the table shows the median, and min..max)
#   RUNS="vipr bird vipr-dump bird-dump gobgp-grpc gobgp-stream gobgp-embedded gobgp-cli"
#   CLI_N=5000        routes for the one-process-per-path CLI variant (extrapolated to N)
#   CLI_REPEAT=1      repetitions of the CLI variant
#   POLL=0.003        receiver poll interval in seconds
#   RUN_TIMEOUT=1800  seconds one run may take until the receiver has all routes
#   BENCH_BIN=path    a prebuilt bench_speaker (e.g. built from a clean checkout); else
#                     `cargo build --release -p bgp --example bench_speaker` in this tree
#   NO_INSTALL=1      do not apt-get install missing packages
#   KEEP=1            keep the work dir (configs, logs, raw outputs)
#   PERF_OUT=path     vipr runs: `perf record -g` the speaker into path.N (use a BENCH_BIN
#                     built with CARGO_PROFILE_RELEASE_STRIP=false for symbols)
#
# What each run measures. Every speaker is eBGP AS 65001 -> the receiving BIRD (AS 65000,
# passive, `import all; export none`, no kernel protocol), one IPv4 session, hold 90 s.
#   vipr            live announce: session Established and idle; bench_speaker prints
#                   ANNOUNCE_T0 (start) right before one Speaker::announce() of N /32s (the
#                   prefixes are generated before it).
#   bird            live announce: session Established and idle; start = right before
#                   `birdc enable bench` of a disabled static protocol holding the N routes.
#                   Enabling it puts them into BIRD's table, whence they are exported: the
#                   analogue of announce(). The birdc round trip (~2 ms) counts against BIRD.
#   vipr-dump       initial table dump: N routes in the speaker before the session comes up
#   bird-dump       (vipr: announced before add_peer; BIRD: static routes loaded, then
#                   `birdc enable` of the BGP protocol). Start = the earlier of the two ends'
#                   own Established times (the receiver's BIRD log "spk: State changed to
#                   up"; the speaker's ESTABLISHED print or BIRD log): the time from when the
#                   session can carry routes until the receiver has them.
#   gobgp-grpc      gobgpd + a Go gRPC client (one connection) calling AddPath once per prefix
#                   as kube-vip does per VIP; start = the client's T0, printed right before
#                   the first call.
#   gobgp-embedded  kube-vip's actual shape: GoBGP's BgpServer in-process, AddPath once per
#                   prefix; start = right before the first call.
#   gobgp-stream    reference batch: AddPathStream, 1000 paths per message.
#   gobgp-cli       reference: one `gobgp global rib add` process per prefix for CLI_N
#                   prefixes, extrapolated linearly to N (mostly process start-up cost).
# Stop point (all): the end of the first poll of `show protocols all spk` at the receiver
#   that reports "Routes: N imported", over one persistent control-socket connection
#   (socat; a poll takes well under 1 ms), every POLL s. 'res' in the raw lines is the gap
#   between that poll and the one before it: the true arrival lies inside it.
# Clocks: CLOCK_REALTIME in µs everywhere (bash $EPOCHREALTIME, the speakers' own prints,
#   BIRD's `timeformat log "%s.%6f"`), one host.
# RSS: VmRSS of the speaker process 1 s after the receiver had all routes (GoBGP via gRPC:
#   gobgpd's; the client is not counted). CPU: user+system of the speaker process from just
#   before the start point to 1 s after the stop point, /proc/PID/stat in 10 ms ticks; rxCPU
#   is the receiving BIRD's over the same window.
set -euo pipefail
export LC_ALL=C

N=${N:-100000}
REPEAT=${REPEAT:-3}
RUNS=${RUNS:-"vipr bird vipr-dump bird-dump gobgp-grpc gobgp-stream gobgp-embedded gobgp-cli"}
CLI_N=${CLI_N:-5000}
CLI_REPEAT=${CLI_REPEAT:-1}
POLL=${POLL:-0.003}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "bench-bgp.sh: needs root (namespaces)" >&2; exit 1; }

TOR=bgpb-tor-$$
NODE=bgpb-node-$$
TOR_IP=10.201.0.1
NODE_IP=10.201.0.2
RX_AS=65000
SPK_AS=65001
BASE=10.128.0.0
W=$(mktemp -d /tmp/bench-bgp.XXXXXX)
PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for ns in "$TOR" "$NODE"; do
        if ip netns list | grep -qw "$ns"; then
            # Anything still in our own namespaces was started by this script.
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
            ip netns del "$ns"
        fi
    done
    if [ -n "${KEEP:-}" ]; then log "work dir kept: $W"; else rm -rf "$W"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- setup
need_pkgs=()
command -v bird >/dev/null || need_pkgs+=(bird2)
command -v socat >/dev/null || need_pkgs+=(socat)
command -v gobgpd >/dev/null || need_pkgs+=(gobgpd)
case " $RUNS " in *" gobgp-grpc "*|*" gobgp-stream "*|*" gobgp-embedded "*)
    command -v go >/dev/null || need_pkgs+=(golang-go)
    [ -d /usr/share/gocode/src/github.com/osrg/gobgp/pkg/server ] || need_pkgs+=(golang-github-osrg-gobgp-dev)
    # gobgp-dev pulls in github.com/golang/protobuf 1.3, whose codec cannot decode gobgp's
    # API v2 messages ("protobuf tag not enough fields"); 1.5 replaces it.
    dpkg -s golang-github-golang-protobuf-1-5-dev >/dev/null 2>&1 ||
        need_pkgs+=(golang-github-golang-protobuf-1-5-dev)
esac
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ -z "${NO_INSTALL:-}" ] || { echo "missing packages: ${need_pkgs[*]}" >&2; exit 1; }
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if [ -n "${BENCH_BIN:-}" ]; then
    BENCH=$BENCH_BIN
else
    BENCH=$ROOT/target/release/examples/bench_speaker
    log "cargo build --release -p bgp --example bench_speaker"
    (cd "$ROOT" && cargo build --release -q -p bgp --example bench_speaker)
fi

# A GoBGP client, built from Debian's gobgp source package (GOPATH mode, offline):
#   grpc-one    SOCK N BASE                      AddPath per prefix over gobgpd's gRPC API
#   grpc-stream SOCK N BASE BATCH                AddPathStream, BATCH paths per message
#   embedded    PEER PEERAS LOCALAS RID N BASE   in-process BgpServer + AddPath per prefix,
#                                                exactly like kube-vip's pkg/bgp
GOSRC=$(cat <<'GOEOF'
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	apb "google.golang.org/protobuf/types/known/anypb"
)

var v4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

func say(f string, a ...interface{}) { fmt.Printf(f+"\n", a...); os.Stdout.Sync() }
func nowUs() int64                    { return time.Now().UnixNano() / 1000 }
func die(err error)                   { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
func atoi(s string) int               { n, err := strconv.Atoi(s); if err != nil { die(err) }; return n }

func rss(when string) {
	b, _ := os.ReadFile("/proc/self/status")
	v := "?"
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v = strings.Fields(l)[1]
		}
	}
	say("RSS when=%s vmrss_kb=%s", when, v)
}

func addr(base string, i int) string {
	b := binary.BigEndian.Uint32(net.ParseIP(base).To4())
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, b+uint32(i))
	return ip.String()
}

// Like kube-vip's getPath: NLRI, ORIGIN IGP, NEXT_HOP 0.0.0.0 (next-hop-self on eBGP).
func path(ip string) *api.Path {
	nlri, _ := apb.New(&api.IPAddressPrefix{Prefix: ip, PrefixLen: 32})
	origin, _ := apb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := apb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
	return &api.Path{Family: v4, Nlri: nlri, Pattrs: []*apb.Any{origin, nh}}
}

func waitSignals() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	for s := range ch {
		if s == syscall.SIGUSR1 {
			rss("sigusr1")
		} else {
			return
		}
	}
}

func main() {
	ctx := context.Background()
	a := os.Args[1:]
	switch a[0] {
	case "grpc-one", "grpc-stream":
		conn, err := grpc.Dial(a[1], grpc.WithInsecure())
		if err != nil {
			die(err)
		}
		c := api.NewGobgpApiClient(conn)
		n := atoi(a[2])
		// Warm the connection up (not timed).
		if _, err := c.GetBgp(ctx, &api.GetBgpRequest{}); err != nil {
			die(err)
		}
		t0 := time.Now()
		say("T0 realtime_us=%d n=%d", nowUs(), n)
		if a[0] == "grpc-one" {
			for i := 0; i < n; i++ {
				if _, err := c.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path(addr(a[3], i))}); err != nil {
					die(err)
				}
			}
		} else {
			batch := atoi(a[4])
			st, err := c.AddPathStream(ctx)
			if err != nil {
				die(err)
			}
			for i := 0; i < n; i += batch {
				ps := make([]*api.Path, 0, batch)
				for j := i; j < i+batch && j < n; j++ {
					ps = append(ps, path(addr(a[3], j)))
				}
				if err := st.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: ps}); err != nil {
					die(err)
				}
			}
			if _, err := st.CloseAndRecv(); err != nil {
				die(err)
			}
		}
		say("CALLS_DONE dt_us=%d", time.Since(t0).Microseconds())
	case "embedded":
		peer, pas, las, rid, n, base := a[1], atoi(a[2]), atoi(a[3]), a[4], atoi(a[5]), a[6]
		lg := log.NewDefaultLogger()
		lg.SetLevel(log.WarnLevel)
		s := server.NewBgpServer(server.LoggerOption(lg))
		go s.Serve()
		if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: uint32(las), RouterId: rid, ListenPort: -1}}); err != nil {
			die(err)
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:     &api.PeerConf{NeighborAddress: peer, PeerAsn: uint32(pas)},
			Timers:   &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 90, KeepaliveInterval: 30}},
			AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: v4, Enabled: true}}},
		}}); err != nil {
			die(err)
		}
		for {
			up := false
			s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
				up = p.State.SessionState == api.PeerState_ESTABLISHED
			})
			if up {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		say("ESTABLISHED realtime_us=%d", nowUs())
		time.Sleep(200 * time.Millisecond)
		rss("established")
		// Wait for the driver's go (SIGUSR2) so that it can take its baselines first.
		go2 := make(chan os.Signal, 1)
		signal.Notify(go2, syscall.SIGUSR2)
		say("WAITING for SIGUSR2")
		<-go2
		t0 := time.Now()
		say("T0 realtime_us=%d n=%d", nowUs(), n)
		for i := 0; i < n; i++ {
			if _, err := s.AddPath(ctx, &api.AddPathRequest{Path: path(addr(base, i))}); err != nil {
				die(err)
			}
		}
		say("CALLS_DONE dt_us=%d", time.Since(t0).Microseconds())
		waitSignals()
	default:
		die(fmt.Errorf("unknown mode %s", a[0]))
	}
}
GOEOF
)

GOBENCH=
build_gobench() {
    local sum cache gp
    sum=$( { printf '%s' "$GOSRC"; dpkg -l 'golang-*' 2>/dev/null | awk '/^ii/{print $2, $3}'; } |
        sha256sum | cut -c1-16)
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/vipr-bench
    GOBENCH=$cache/gobgpbench-$sum
    [ -x "$GOBENCH" ] && return
    log "building the GoBGP client (go $(go version | awk '{print $3}'), Debian's gobgp source)"
    gp=$W/gopath
    mkdir -p "$gp/src/github.com/osrg/gobgp" "$gp/src/gobgpbench" "$cache"
    # Debian ships the v3 module at its v1 path; the alias lets GOPATH mode resolve /v3.
    ln -sfn /usr/share/gocode/src/github.com/osrg/gobgp "$gp/src/github.com/osrg/gobgp/v3"
    printf '%s\n' "$GOSRC" > "$gp/src/gobgpbench/main.go"
    (cd "$gp/src/gobgpbench" && env GO111MODULE=off GOPATH="$gp:/usr/share/gocode" \
        GOCACHE="$cache/gocache" GOFLAGS= go build -o "$GOBENCH.tmp" .)
    mv "$GOBENCH.tmp" "$GOBENCH"
}
case " $RUNS " in *" gobgp-grpc "*|*" gobgp-stream "*|*" gobgp-embedded "*) build_gobench ;; esac

log "namespaces $TOR and $NODE, work dir $W"
ip netns add "$TOR"
ip netns add "$NODE"
ip link add "bbt$$" type veth peer name "bbn$$"
ip link set "bbt$$" netns "$TOR"
ip link set "bbn$$" netns "$NODE"
ip -n "$TOR" addr add $TOR_IP/24 dev "bbt$$"
ip -n "$NODE" addr add $NODE_IP/24 dev "bbn$$"
for ns in "$TOR" "$NODE"; do ip -n "$ns" link set lo up; done
ip -n "$TOR" link set "bbt$$" up
ip -n "$NODE" link set "bbn$$" up
ip netns exec "$NODE" ping -c1 -W2 $TOR_IP >/dev/null

# ---------------------------------------------------------------------------- helpers
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
exec {SLEEPFD}<> <(:)
nap() { read -rt "$1" -u "$SLEEPFD" || true; }

cpu_ms() { # user+system CPU of the given pids in ms (10 ms ticks)
    local hz total=0 p f
    hz=$(getconf CLK_TCK)
    for p in "$@"; do
        f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
        total=$((total + (${f% *} + ${f#* }) * 1000 / hz))
    done
    echo $total
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2 end; shift 2
    end=$(( $(now_us) + secs * 1000000 ))
    until "$@" >/dev/null 2>&1; do
        [ "$(now_us)" -lt "$end" ] || { log "timeout waiting for $what"; return 1; }
        nap 0.05
    done
}

start_bird() { # start_bird NS NAME CONF -> sets BIRD_PID, socket $W/NAME.ctl
    local ns=$1 name=$2 conf=$3
    rm -f "$W/$name.ctl"
    ip netns exec "$ns" bird -f -c "$conf" -s "$W/$name.ctl" >"$W/$name.stdout" 2>&1 &
    BIRD_PID=$!
    PIDS+=("$BIRD_PID")
    wait_for 120 "$name control socket" birdc -s "$W/$name.ctl" show status
}

stop_pid() {
    local p=$1
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; nap 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

rx_established() { birdc -s "$W/rx.ctl" show protocols spk | grep -q Established; }
# A BIRD's own log time of protocol $2 reaching Established (log file $1), in µs.
bird_up_us() {
    local t
    t=$(awk -v p="$2:" '$3 == p && /State changed to up/ {print $1; exit}' "$1" 2>/dev/null)
    [ -n "$t" ] && echo "${t/./}"
}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

start_receiver() {
    cat >"$W/rx.conf" <<EOF
router id $TOR_IP;
timeformat log "%s.%6f";
log "$W/rx.log" all;
protocol device {}
protocol bgp spk {
    local $TOR_IP as $RX_AS;
    neighbor $NODE_IP as $SPK_AS;
    passive on;
    hold time 90;
    keepalive time 30;
    connect retry time 1;
    error wait time 1, 5;
    debug { states };
    ipv4 { import all; export none; };
}
EOF
    rm -f "$W/rx.log"
    start_bird "$TOR" rx "$W/rx.conf"
    RX_PID=$BIRD_PID
}

# Polls the receiver until it has $1 routes, over one persistent connection to BIRD's
# control socket (socat; a poll costs well under a millisecond, unlike a birdc process).
# rx_open sets RX_START (connected); wait_receiver sets RX_FIRST (end of the first poll
# seeing any route), RX_99 (... seeing 99 %), RX_FULL (... seeing all) and RX_PREV (end of
# the poll before that one).
# rx_open connects (call it before the start point); wait_receiver polls and disconnects.
rx_open() {
    local line
    # grep passes on only the two lines that matter: bash reads a pipe byte by byte.
    coproc RXC { socat - "UNIX-CONNECT:$W/rx.ctl" | grep --line-buffered -E '^ *Routes:|^[0-9]{4} '; }
    RX_RFD=${RXC[0]} RX_WFD=${RXC[1]} RX_CPID=$RXC_PID
    IFS= read -r -t 5 -u "$RX_RFD" line || { log "no banner from the receiver's control socket"; return 1; }
    RX_START=$(now_us)
}
wait_receiver() {
    local want=$1 deadline n t prev line rc=0 rfd=$RX_RFD wfd=$RX_WFD cpid=$RX_CPID
    RX_FIRST=0 RX_FULL=0 RX_PREV=0 RX_99=0
    prev=$(now_us)
    deadline=$(( prev + RUN_TIMEOUT * 1000000 ))
    while :; do
        n=0 line=
        if echo "show protocols all spk" 2>/dev/null >&"$wfd"; then
            while IFS= read -r -t 10 -u "$rfd" line 2>/dev/null; do
                case $line in
                    *Routes:*) n=${line#*Routes:}; n=${n%% imported*}; n=${n// /} ;;
                    [0-9][0-9][0-9][0-9]" "*) break ;;
                esac
            done
        fi
        t=$(now_us)
        [ -z "${TRACE:-}" ] || echo "$t $n" >>"$W/poll-trace"
        case $line in
            [0-9][0-9][0-9][0-9]" "*) ;;
            *) log "lost the receiver's control connection (did the receiving BIRD die?)"; rc=1; break ;;
        esac
        [ "$RX_FIRST" != 0 ] || [ "$n" -eq 0 ] || RX_FIRST=$t
        [ "$RX_99" != 0 ] || [ "$((n * 100))" -lt "$((want * 99))" ] || RX_99=$t
        if [ "$n" -ge "$want" ]; then RX_FULL=$t RX_PREV=$prev; break; fi
        if [ "$t" -ge "$deadline" ]; then
            log "receiver has $n of $want routes after ${RUN_TIMEOUT}s"; rc=1; break
        fi
        prev=$t
        nap "$POLL"
    done
    eval "exec $wfd>&-" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    return $rc
}

ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)/1000}'; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

take_baseline() { CPU0=$(cpu_ms "$@"); RXCPU0=$(cpu_ms "$RX_PID"); }

# After wait_receiver and a 1 s settle, records one result line in $W/results:
#   speaker routes time_ms first_ms t99_ms rss_kb cpu_ms rx_cpu_ms res_ms notes
# Args: name routes t0_us rss_pid note cpu_pids... Call `nap 1` first (settle).
record() {
    local name=$1 n=$2 t0=$3 rsspid=$4 note=$5; shift 5
    local cpu rxcpu rss line first
    cpu=$(( $(cpu_ms "$@") - CPU0 )); rxcpu=$(( $(cpu_ms "$RX_PID") - RXCPU0 ))
    rss=$(rss_kb "$rsspid")
    first=$(ms "$t0" "$RX_FIRST")
    # A '*' marks a 'first' that may be late: polling began after the start point.
    [ "$RX_START" -le "$t0" ] || first="$first*"
    # The 1-minute load average goes into the notes: this box has 2 cores, and anything
    # else running skews the numbers.
    line="$name $n $(ms "$t0" "$RX_FULL") $first $(ms "$t0" "$RX_99") $rss $cpu $rxcpu $(ms "$(max "$RX_PREV" "$t0")" "$RX_FULL") ${note},load=$(cut -d' ' -f1 /proc/loadavg)"
    echo "$line" >>"$W/results"
    log "result: $line"
}

out_us() { sed -n "s/^$1 realtime_us=\([0-9]*\).*/\1/p" "$2" | head -1; }
out_ms() { awk -v k="$1" '$1 == k { for (i = 2; i <= NF; i++) if ($i ~ /^dt_us=/) { split($i, a, "="); printf "%.1f", a[2] / 1000 } }' "$2"; }

# ---------------------------------------------------------------------------- runs
# vipr, live announce: Established and idle, then one announce() of N routes.
run_vipr() {
    local i=$1 out=$W/vipr-$1.out pid t0
    start_receiver
    ip netns exec "$NODE" "$BENCH" $TOR_IP $RX_AS $SPK_AS $NODE_IP "$N" --hold 90 \
        --base $BASE --wait-usr2 >"$out" 2>"$W/vipr-$i.err" &
    pid=$!; PIDS+=("$pid")
    wait_for 60 "vipr WAITING" grep -q WAITING "$out"
    wait_for 10 "receiver Established" rx_established
    local perf=
    if [ -n "${PERF_OUT:-}" ]; then
        perf record -q -F 4999 -g -p "$pid" -o "$PERF_OUT.$i" 2>/dev/null &
        perf=$!; nap 0.5
    fi
    take_baseline "$pid"
    rx_open
    kill -USR2 "$pid"
    wait_receiver "$N" || return 1
    nap 1
    if [ -n "$perf" ]; then kill -INT "$perf"; wait "$perf" || true; fi
    t0=$(out_us ANNOUNCE_T0 "$out")
    record vipr "$N" "$t0" "$pid" "announce=$(out_ms ANNOUNCE_RETURNED "$out")ms,encoded=$(out_ms ENCODED "$out")ms,handed=$(out_ms HANDED "$out")ms" "$pid"
    stop_pid "$pid"; stop_pid "$RX_PID"
}

# vipr, initial dump: N routes announced before the peer is added; t0 = the receiver's
# Established.
run_vipr_dump() {
    local i=$1 out=$W/vipr-dump-$1.out pid t0
    start_receiver
    ip netns exec "$NODE" "$BENCH" $TOR_IP $RX_AS $SPK_AS $NODE_IP "$N" --hold 90 \
        --base $BASE --preload --wait-usr2 >"$out" 2>"$W/vipr-dump-$i.err" &
    pid=$!; PIDS+=("$pid")
    wait_for 60 "vipr WAITING" grep -q WAITING "$out"
    take_baseline "$pid"
    rx_open
    kill -USR2 "$pid"
    wait_receiver "$N" || return 1
    nap 1
    # Start: whichever end saw Established first (the speaker's is usually earlier).
    local rx_up sp_up
    rx_up=$(bird_up_us "$W/rx.log" spk); sp_up=$(out_us ESTABLISHED "$out")
    t0=$(min "$rx_up" "$sp_up")
    record vipr-dump "$N" "$t0" "$pid" "rx_established=+$(ms "$t0" "$rx_up")ms,speaker_established=+$(ms "$t0" "$sp_up")ms,encoded=$(out_ms ENCODED "$out")ms,handed=$(out_ms HANDED "$out")ms" "$pid"
    stop_pid "$pid"; stop_pid "$RX_PID"
}

bird_speaker_conf() { # $1 file, $2 "static" or "bgp": which protocol starts disabled
    {
        echo "router id $NODE_IP;"
        echo "timeformat log \"%s.%6f\";"
        echo "log \"$W/spk-bird.log\" all;"
        echo "protocol device {}"
        echo "protocol bgp tor {"
        if [ "$2" = bgp ]; then echo "    disabled;"; fi
        echo "    local $NODE_IP as $SPK_AS; neighbor $TOR_IP as $RX_AS;"
        echo "    hold time 90; keepalive time 30; connect retry time 1; error wait time 1, 5;"
        echo "    debug { states };"
        echo "    ipv4 { import none; export all; };"
        echo "}"
        echo "protocol static bench {"
        if [ "$2" = static ]; then echo "    disabled;"; fi
        echo "    ipv4;"
        awk -v n="$N" 'BEGIN { b = 10*2^24 + 128*2^16;
            for (i = 0; i < n; i++) { a = b + i;
                printf "    route %d.%d.%d.%d/32 blackhole;\n", int(a/2^24), int(a/2^16)%256, int(a/2^8)%256, a%256 } }'
        echo "}"
    } >"$1"
}

# BIRD, live announce: Established and idle, then `birdc enable` of the static protocol.
run_bird() {
    local i=$1 pid t0 t1 bc
    [ -f "$W/spk-static-off.conf" ] || bird_speaker_conf "$W/spk-static-off.conf" static
    start_receiver
    rm -f "$W/spk-bird.log"
    start_bird "$NODE" spk "$W/spk-static-off.conf"
    pid=$BIRD_PID
    wait_for 30 "receiver Established" rx_established
    nap 0.3
    take_baseline "$pid"
    rx_open
    t0=$(now_us)
    { birdc -s "$W/spk.ctl" enable bench >/dev/null; now_us >"$W/birdc-done"; } &
    bc=$!
    wait_receiver "$N" || return 1
    nap 1
    wait "$bc"; t1=$(cat "$W/birdc-done")
    record bird "$N" "$t0" "$pid" "birdc_enable_returned=$(ms "$t0" "$t1")ms" "$pid"
    stop_pid "$pid"; stop_pid "$RX_PID"
}

# BIRD, initial dump: static routes loaded, then `birdc enable` of the BGP protocol;
# t0 = the receiver's Established.
run_bird_dump() {
    local i=$1 pid t0
    [ -f "$W/spk-bgp-off.conf" ] || bird_speaker_conf "$W/spk-bgp-off.conf" bgp
    start_receiver
    rm -f "$W/spk-bird.log"
    start_bird "$NODE" spk "$W/spk-bgp-off.conf"
    pid=$BIRD_PID
    wait_for 60 "speaker BIRD has the static routes" \
        sh -c "birdc -s '$W/spk.ctl' show protocols all bench | grep -q 'Routes: *$N imported'"
    nap 0.3
    take_baseline "$pid"
    rx_open
    birdc -s "$W/spk.ctl" enable tor >/dev/null &
    wait_receiver "$N" || return 1
    nap 1
    local rx_up sp_up
    rx_up=$(bird_up_us "$W/rx.log" spk); sp_up=$(bird_up_us "$W/spk-bird.log" tor)
    t0=$(min "$rx_up" "$sp_up")
    record bird-dump "$N" "$t0" "$pid" "rx_established=+$(ms "$t0" "$rx_up")ms,speaker_established=+$(ms "$t0" "$sp_up")ms" "$pid"
    stop_pid "$pid"; stop_pid "$RX_PID"
}

gobgpd_conf() {
    cat >"$W/gobgpd.toml" <<EOF
[global.config]
  as = $SPK_AS
  router-id = "$NODE_IP"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "$TOR_IP"
    peer-as = $RX_AS
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 90
    keepalive-interval = 30
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
EOF
}

start_gobgpd() {
    gobgpd_conf
    rm -f "$W/gobgp.sock"
    ip netns exec "$NODE" gobgpd -f "$W/gobgpd.toml" -p --pprof-disable -l warn \
        --api-hosts "unix://$W/gobgp.sock" >"$W/gobgpd.log" 2>&1 &
    GOBGPD_PID=$!; PIDS+=("$GOBGPD_PID")
    # GoBGP waits 5–9 s before its first connect.
    wait_for 60 "receiver Established (gobgpd)" rx_established
    nap 0.3
}

# GoBGP daemon + gRPC client: AddPath per prefix (grpc-one) or AddPathStream (grpc-stream).
run_gobgp_api() { # $1 mode, $2 iteration
    local mode=$1 i=$2 out=$W/$1-$2.out cpid t0 name
    start_receiver
    start_gobgpd
    take_baseline "$GOBGPD_PID"
    rx_open
    if [ "$mode" = grpc-one ]; then
        ip netns exec "$NODE" "$GOBENCH" grpc-one "unix://$W/gobgp.sock" "$N" $BASE >"$out" 2>&1 &
        name=gobgp-grpc
    else
        ip netns exec "$NODE" "$GOBENCH" grpc-stream "unix://$W/gobgp.sock" "$N" $BASE 1000 >"$out" 2>&1 &
        name=gobgp-stream
    fi
    cpid=$!; PIDS+=("$cpid")
    wait_receiver "$N" || return 1
    nap 1
    wait "$cpid" || true
    t0=$(out_us T0 "$out")
    # The speaker columns are gobgpd's; the client's call time is noted.
    record "$name" "$N" "$t0" "$GOBGPD_PID" "calls_done=$(out_ms CALLS_DONE "$out")ms" "$GOBGPD_PID"
    stop_pid "$GOBGPD_PID"; stop_pid "$RX_PID"
}

# GoBGP in-process like kube-vip: BgpServer in the client, AddPath per prefix.
run_gobgp_embedded() {
    local i=$1 out=$W/embedded-$1.out pid t0
    start_receiver
    ip netns exec "$NODE" "$GOBENCH" embedded $TOR_IP $RX_AS $SPK_AS $NODE_IP "$N" $BASE >"$out" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_for 60 "embedded GoBGP WAITING" grep -q WAITING "$out"
    wait_for 10 "receiver Established" rx_established
    take_baseline "$pid"
    rx_open
    kill -USR2 "$pid"
    wait_receiver "$N" || return 1
    nap 1
    t0=$(out_us T0 "$out")
    record gobgp-embedded "$N" "$t0" "$pid" "calls_done=$(out_ms CALLS_DONE "$out")ms" "$pid"
    stop_pid "$pid"; stop_pid "$RX_PID"
}

# GoBGP daemon + one `gobgp global rib add` process per prefix, CLI_N prefixes.
run_gobgp_cli() {
    local i=$1 t0 t1 ip
    start_receiver
    start_gobgpd
    take_baseline "$GOBGPD_PID"
    # Generate the addresses first so that only the gobgp processes are timed.
    awk -v n="$CLI_N" 'BEGIN { b = 10*2^24 + 128*2^16;
        for (i = 0; i < n; i++) { a = b + i;
            printf "%d.%d.%d.%d\n", int(a/2^24), int(a/2^16)%256, int(a/2^8)%256, a%256 } }' >"$W/cli-addrs"
    t0=$(now_us)
    while read -r ip; do
        gobgp --target "unix://$W/gobgp.sock" global rib add -a ipv4 "$ip/32" >/dev/null
    done <"$W/cli-addrs"
    t1=$(now_us)
    rx_open
    wait_receiver "$CLI_N" || return 1
    nap 1
    record gobgp-cli "$CLI_N" "$t0" "$GOBGPD_PID" "calls_done=$(ms "$t0" "$t1")ms" "$GOBGPD_PID"
    stop_pid "$GOBGPD_PID"; stop_pid "$RX_PID"
}

run_one() { # $1 speaker, $2 iteration
    local r=$1 i=$2
    case $r in
        vipr) run_vipr "$i" ;;
        vipr-dump) run_vipr_dump "$i" ;;
        bird) run_bird "$i" ;;
        bird-dump) run_bird_dump "$i" ;;
        gobgp-grpc) run_gobgp_api grpc-one "$i" ;;
        gobgp-stream) run_gobgp_api grpc-stream "$i" ;;
        gobgp-embedded) run_gobgp_embedded "$i" ;;
        gobgp-cli) run_gobgp_cli "$i" ;;
        *) echo "unknown run $r" >&2; exit 2 ;;
    esac
}

: >"$W/results"
for r in $RUNS; do
    reps=$REPEAT
    [ "$r" != gobgp-cli ] || reps=$CLI_REPEAT
    for i in $(seq "$reps"); do
        log "run $r #$i (N=$N)"
        ok=
        for attempt in 1 2; do
            # A subshell with -e of its own (not in an `if`, where bash would ignore -e).
            set +e
            ( set -e; run_one "$r" "$i" )
            rc=$?
            set -e
            if [ "$rc" = 0 ]; then ok=1; break; fi
            log "run $r #$i failed (attempt $attempt); logs:"
            tail -n 5 "$W"/*.log "$W"/*.stdout "$W"/*.err 2>/dev/null | sed 's/^/    /' >&2 || true
            for ns in "$TOR" "$NODE"; do
                for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
            done
            nap 1
        done
        [ -n "$ok" ] || log "run $r #$i failed twice; skipped"
    done
done

# ---------------------------------------------------------------------------- report
mkdir -p "$ROOT/labs/out"
OUT=$ROOT/labs/out/bench-bgp-$(date +%Y%m%d-%H%M%S).txt
{
    echo "# bench-bgp $(date -Is) on $(uname -r), $(nproc) cores; N=$N, REPEAT=$REPEAT"
    if [ -n "${BENCH_BIN:-}" ]; then src="$BENCH_BIN"; else src="vipr $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- bgp 2>/dev/null || echo +dirty)"; fi
    echo "# bench_speaker: $src; $(bird --version 2>&1); gobgp $(gobgpd --version 2>&1 | awk '{print $3}'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# time: start point (see script header) to the end of the first receiver poll showing all routes;"
    echo "# median of the runs (min..max); 'first'/'99%' = first poll showing any route / 99 % of them;"
    echo "# 'res' = gap between the last two polls (the resolution of that run); CPU = speaker"
    echo "# user+sys over the run, rxCPU = the receiving BIRD's; the other columns are medians too."
    awk -v N="$N" '
        { name=$1; cnt[name]++; k=cnt[name]; n[name]=$2; t[name,k]=$3; f[name,k]=$4; p99[name,k]=$5;
          rss[name,k]=$6; cpu[name,k]=$7; rx[name,k]=$8; res[name,k]=$9; ex[name,k]=$10;
          if (!(name in seen)) { seen[name]=1; order[++no]=name } }
        function med(arr, name, m,   i, j, v, tmp) {
            for (i = 1; i <= m; i++) v[i] = arr[name, i] + 0
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
            lo = v[1]; hi = v[m]
            return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        }
        END {
            printf "%-15s %6s %23s %9s %9s %8s %8s %9s %4s  %s\n", "speaker", "routes", "time to N at rx (ms)", "first(ms)", "99%(ms)", "RSS(MiB)", "CPU(ms)", "rxCPU(ms)", "runs", "notes (per run)"
            for (o = 1; o <= no; o++) {
                s = order[o]; m = cnt[s]
                tm = med(t, s, m); tl = lo; th = hi
                fm = med(f, s, m); pm = med(p99, s, m); rm = med(rss, s, m); cm = med(cpu, s, m); xm = med(rx, s, m)
                notes = ""
                for (k = 1; k <= m; k++) notes = notes (k > 1 ? " " : "") ex[s, k] "/res=" res[s, k]
                printf "%-15s %6d %9.1f (%5.0f..%5.0f) %9.1f %9.1f %8.1f %8d %9d %4d  %s\n", s, n[s], tm, tl, th, fm, pm, rm / 1024, cm, xm, m, notes
                T[s] = tm; P[s] = pm; NN[s] = n[s]
            }
            print ""
            if (("vipr" in T) && ("bird" in T)) printf "vipr / BIRD time ratio: %.2f (goal <= 1.5)\n", T["vipr"] / T["bird"]
            if (("vipr-dump" in T) && ("bird-dump" in T) && T["bird-dump"] > 0 && P["bird-dump"] > 0)
                printf "initial dump, vipr / BIRD: %.2f to all routes, %.2f to 99 %% of them\n", T["vipr-dump"] / T["bird-dump"], P["vipr-dump"] / P["bird-dump"]
            if (("vipr" in T) && ("gobgp-grpc" in T)) printf "GoBGP one-by-one gRPC / vipr: %.1fx (goal >= 10)\n", T["gobgp-grpc"] / T["vipr"]
            if (("vipr" in T) && ("gobgp-embedded" in T)) printf "GoBGP embedded one-by-one (kube-vip style) / vipr: %.1fx (goal >= 10)\n", T["gobgp-embedded"] / T["vipr"]
            if ("gobgp-cli" in T) {
                x = T["gobgp-cli"] * N / NN["gobgp-cli"]
                printf "GoBGP CLI one-by-one: %d routes in %.1f ms -> EXTRAPOLATED to %d routes: %.1f s", NN["gobgp-cli"], T["gobgp-cli"], N, x / 1000
                if ("vipr" in T) printf " (%.0fx vipr)", x / T["vipr"]
                printf "; one gobgp process per path, so mostly process start-up\n"
            }
        }' "$W/results"
    echo
    echo "# raw: speaker routes time_ms first_ms t99_ms rss_kb cpu_ms rx_cpu_ms res_ms notes"
    cat "$W/results"
} | tee "$OUT"
log "written to $OUT"
