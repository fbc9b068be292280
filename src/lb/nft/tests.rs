//! The nftables data plane: the scripts it writes, reading them back, and the same trait
//! contract as IPVS against the real kernel (in a fresh network namespace).

use super::*;
use crate::lb::{diff, FwdMethod, Scheduler, Service};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn svc(sched: Scheduler, dests: &[&str]) -> Service {
    Service {
        scheduler: sched,
        fwd: FwdMethod::Masquerade,
        dests: dests.iter().map(|d| a(d)).collect(),
    }
}

#[test]
fn names_are_hex_of_address_and_port() {
    assert_eq!(
        names(&a("192.0.2.10:6443")),
        (
            "s4_c000020a_192b".to_string(),
            "b4_c000020a_192b".to_string()
        )
    );
    let (c, m) = names(&a("[2001:db8::10]:443"));
    assert_eq!(c, "s6_20010db8000000000000000000000010_01bb");
    assert_eq!(m, "b6_20010db8000000000000000000000010_01bb");
}

#[test]
fn a_new_service_is_one_transaction_with_its_map_rule_and_vmap_element() {
    let key = a("192.0.2.10:6443");
    let mut t = Table::new();
    t.insert(key, svc(Scheduler::Rr, &["10.0.0.1:6443", "10.0.0.2:6443"]));
    let p = diff(&Table::new(), &t, &BTreeSet::new());
    let s = render(TABLE, &p.ops, &p.target);
    assert_eq!(
        s,
        "add chain inet vipr s4_c000020a_192b\n\
         add map inet vipr b4_c000020a_192b { typeof numgen inc mod 1 : ip daddr . tcp dport; }\n\
         add element inet vipr b4_c000020a_192b { 0 : 10.0.0.1 . 6443, 1 : 10.0.0.2 . 6443 }\n\
         add rule inet vipr s4_c000020a_192b meta l4proto tcp dnat ip to numgen inc mod 2 map @b4_c000020a_192b comment \"vipr rr masquerade\"\n\
         add element inet vipr svc4 { 192.0.2.10 . 6443 : jump s4_c000020a_192b }\n\
         add element inet vipr masq4 { 192.0.2.10 . 6443 }\n"
    );
}

#[test]
fn a_changed_service_is_rewritten_and_a_removed_one_deleted() {
    let k6 = a("[2001:db8::10]:6443");
    let k4 = a("192.0.2.10:6443");
    let mut have = Table::new();
    have.insert(k6, svc(Scheduler::Sh, &["[2001:db8::1]:6443"]));
    have.insert(k4, svc(Scheduler::Rr, &["10.0.0.1:6443"]));
    let mut want = Table::new();
    want.insert(
        k6,
        svc(Scheduler::Sh, &["[2001:db8::1]:6443", "[2001:db8::2]:6443"]),
    );
    let p = diff(&have, &want, &BTreeSet::new());
    let s = render(TABLE, &p.ops, &p.target);
    let (c6, m6) = names(&k6);
    let (c4, m4) = names(&k4);
    assert!(
        s.contains(&format!(
            "flush chain inet vipr {c6}\nflush map inet vipr {m6}\n"
        )),
        "{s}"
    );
    assert!(
        s.contains("0 : 2001:db8::1 . 6443, 1 : 2001:db8::2 . 6443"),
        "{s}"
    );
    assert!(s.contains("dnat ip6 to jhash ip6 saddr mod 2"), "{s}");
    assert!(
        s.contains(&format!(
            "flush chain inet vipr {c4}\ndelete element inet vipr svc4 {{ 192.0.2.10 . 6443 }}\n\
         delete element inet vipr masq4 {{ 192.0.2.10 . 6443 }}\ndelete chain inet vipr {c4}\n\
         delete map inet vipr {m4}\n"
        )),
        "{s}"
    );
}

#[test]
fn listing_is_read_back() {
    // Shaped like `nft -j list table inet vipr` of nft 1.0.6.
    let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
      {"table":{"family":"inet","name":"vipr","handle":1}},
      {"map":{"family":"inet","name":"svc4","table":"vipr","type":["ipv4_addr","inet_service"],"map":"verdict",
        "elem":[[{"concat":["192.0.2.10",6443]},{"jump":{"target":"s4_c000020a_192b"}}]]}},
      {"map":{"family":"inet","name":"svc6","table":"vipr","type":["ipv6_addr","inet_service"],"map":"verdict"}},
      {"map":{"family":"inet","name":"b4_c000020a_192b","table":"vipr","type":"integer","map":"ipv4_addr . inet_service",
        "elem":[[0,{"concat":["10.66.1.2",8080]}],[1,{"concat":["10.66.2.2",8080]}]]}},
      {"chain":{"family":"inet","table":"vipr","name":"s4_c000020a_192b","handle":4}},
      {"rule":{"family":"inet","table":"vipr","chain":"s4_c000020a_192b","handle":14,"comment":"vipr wrr local","expr":[]}}]}"#;
    let t = parse(json).unwrap();
    let mut s = svc(Scheduler::Wrr, &["10.66.1.2:8080", "10.66.2.2:8080"]);
    s.fwd = FwdMethod::Local;
    assert_eq!(t, [(a("192.0.2.10:6443"), s)].into_iter().collect());
    assert!(parse(r#"{"nftables":[]}"#).unwrap().is_empty());
    assert!(parse("nope").is_err());
}

fn ruleset(ns: &testbed::Netns) -> String {
    let out = ns.run(&["nft", "list", "ruleset"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_trait_contract_holds_on_this_kernel_and_nothing_else_changes() {
    let ns = testbed::Netns::new("lbn");
    // Someone else's NAT table, which vipr must leave exactly as it is.
    ns.sh("nft add table ip other && nft add chain ip other pre '{ type nat hook prerouting priority -90; }' \
           && nft add rule ip other pre tcp dport 6443 counter");
    let before = ruleset(&ns);
    let rt = ns.runtime();
    rt.block_on(async {
        let mut n = Nft::open(TABLE.into()).await.expect("nft");
        crate::lb::tests::conformance(&mut n).await;
    });
    assert_eq!(
        ruleset(&ns),
        before,
        "only vipr's table may change, and it is gone"
    );
    // A leftover table (a crash) is replaced at start.
    ns.sh("nft add table inet vipr && nft add chain inet vipr junk");
    rt.block_on(async {
        let mut n = Nft::open(TABLE.into()).await.expect("nft");
        assert!(n.observe().await.unwrap().ours.is_empty());
        n.remove_all().await.unwrap();
    });
    assert_eq!(ruleset(&ns), before);
}
