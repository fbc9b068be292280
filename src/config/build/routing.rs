//! The BGP sections of [`Config`]: the speaker's settings and peers (`bgp_*`, `vipr_bgp_*`),
//! the attribute sets (RFC 1997 communities, RFC 8092 large communities, RFC 4271 §5.1 MED,
//! LOCAL_PREF and AS_PATH prepends) and where peers come from (static, node annotations,
//! the Equinix Metal metadata service).

use super::*;

pub(super) fn bgp(r: &Reader) -> Result<BgpSettings, ConfigError> {
    let hold_time = r.num("bgp_hold_time", 30u16, 0, 65535)?;
    if hold_time == 1 || hold_time == 2 {
        return Err(r.err(
            "bgp_hold_time",
            "must be 0 or at least 3 seconds (RFC 4271)",
        ));
    }
    let keepalive = r.num("bgp_keepalive_interval", 10u16, 0, 21845)?;
    if hold_time > 0 && keepalive >= hold_time {
        // Blame the value that was given: an unset keepalive is the default 10 s.
        return Err(match r.raw("bgp_keepalive_interval") {
            Some(_) => r.err(
                "bgp_keepalive_interval",
                format!("must be less than bgp_hold_time ({hold_time})"),
            ),
            None => r.err(
                "bgp_hold_time",
                format!("must be more than bgp_keepalive_interval ({keepalive} when unset); set bgp_keepalive_interval too, e.g. to a third of the hold time"),
            ),
        });
    }
    let bfd = r
        .parse("vipr_bfd", |v| BfdSpec::parse(v, BfdSpec::default()))?
        .unwrap_or_default();
    let gr_time = r.num("vipr_graceful_restart_time", 120u16, 1, 4095)?;
    let defaults = PeerDefaults {
        hold_time,
        keepalive: Some(keepalive).filter(|k| *k > 0),
        bfd: bfd.to_config(),
        // F bit: the data plane (VIPs on the node, IPVS) survives a restart of vipr.
        graceful_restart: r
            .bool("vipr_graceful_restart", false)?
            .then_some(GracefulRestart {
                restart_time: gr_time,
                forwarding_preserved: true,
            }),
        gtsm_hops: r.parse("vipr_bgp_gtsm", peers::parse_gtsm)?.flatten(),
    };
    let local_as = r.parse("bgp_as", parse_asn)?.unwrap_or(65000);
    let mut peers = r
        .parse("bgp_peers", |v| {
            peers::parse_peers(v, local_as, bfd, &defaults)
        })?
        .unwrap_or_default();
    // The file's peers given as mappings: checked even when a higher layer's bgp_peers wins.
    let mut peer_extras = std::collections::BTreeMap::new();
    if let Some(f) = &r.layers.file_peers {
        let secret_ns = r.string("cp_namespace", "kube-system");
        let parsed = super::peer_map::parse(f, local_as, bfd, &defaults, &secret_ns)?;
        let file_wins = r
            .layers
            .get("bgp_peers")
            .is_some_and(|raw| matches!(raw.origin, super::Origin::File { .. }));
        if file_wins {
            peers = Vec::new();
            for (p, extras) in parsed {
                if extras != Default::default() {
                    peer_extras.insert(p.address, extras);
                }
                peers.push(p);
            }
        }
    }
    let legacy_as = r.parse("bgp_peeras", parse_asn)?.unwrap_or(65000);
    let legacy_pass = r.parse("bgp_peerpass", |v| Ok(bgp::Secret::new(v)))?;
    let legacy_multihop = r.bool("bgp_multihop", false)?;
    if let Some(addr) = r.parse("bgp_peeraddress", ip)? {
        if peers.iter().any(|p| p.address == addr) {
            return Err(r.err("bgp_peeraddress", "this peer is also in bgp_peers"));
        }
        let p = peers::peer(
            addr,
            legacy_as,
            local_as,
            legacy_pass,
            legacy_multihop,
            179,
            if legacy_multihop { None } else { defaults.bfd },
            None,
            &defaults,
        );
        p.validate()
            .map_err(|e| r.err("bgp_peerpass", format!("{}: {}", e.field, e.reason)))?;
        peers.push(p);
    }
    let source_ip = r.parse("bgp_sourceip", ip)?;
    let source_if = r.opt_string("bgp_sourceif");
    let source = match (source_ip, source_if) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict(
                "bgp_sourceip and bgp_sourceif are mutually exclusive".into(),
            ))
        }
        (Some(a), None) => Some(SessionSource::Address(a)),
        (None, Some(i)) => Some(SessionSource::Interface(i)),
        (None, None) => None,
    };
    let router_id = match (
        r.parse("bgp_routerid", |v| {
            let id = ipv4(v)?;
            bgp::config::check_router_id(id)
                .map(|()| id)
                .map_err(str::to_string)
        })?,
        r.opt_string("bgp_routerinterface"),
    ) {
        (Some(id), _) => RouterId::Fixed(id),
        (None, Some(i)) => RouterId::Interface(i),
        (None, None) => RouterId::Auto,
    };
    let (mp_next_hop, peer_mp_next_hop) = peers::mp_next_hop(r, &source, &peers)?;
    let u32_value = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| "expected 0..=4294967295".to_string())
    };
    Ok(BgpSettings {
        local_as,
        router_id,
        source,
        peers,
        peer_extras,
        node_labels: r.parse("vipr_node_labels", super::selector::parse_labels)?,
        defaults,
        listen: r.parse("vipr_bgp_listen", listen_addr)?,
        attrs: RouteAttrs {
            med: r.parse("vipr_med", u32_value)?,
            local_pref: r.parse("vipr_local_pref", u32_value)?,
            communities: r.list("vipr_communities", |s| {
                s.parse::<Community>().map_err(|e| e.to_string())
            })?,
            large_communities: r.list("vipr_large_communities", |s| {
                s.parse::<LargeCommunity>().map_err(|e| e.to_string())
            })?,
            next_hop: None,
            as_path_prepend: 0,
        },
        attr_sets: attr_sets(r)?,
        drain: Some(r.secs("vipr_drain_seconds", 0, 0, 3600)?).filter(|d| !d.is_zero()),
        mp_next_hop,
        peer_mp_next_hop,
    })
}

/// `vipr_bgp_attribute_sets` and the control-plane VIP's choice of them.
fn attr_sets(r: &Reader) -> Result<crate::route_attrs::AttrSets, ConfigError> {
    let mut sets = std::collections::BTreeMap::new();
    for (name, a) in r.list("vipr_bgp_attribute_sets", crate::route_attrs::parse_set)? {
        if sets.insert(name.clone(), a).is_some() {
            return Err(r.err(
                "vipr_bgp_attribute_sets",
                format!("two sets named {name:?}"),
            ));
        }
    }
    let control_plane = r.list("vipr_control_plane_bgp_attributes", |n| {
        if sets.contains_key(n) {
            Ok(n.to_string())
        } else {
            Err(format!("{n:?} is not in vipr_bgp_attribute_sets"))
        }
    })?;
    Ok(crate::route_attrs::AttrSets {
        sets,
        control_plane,
    })
}

pub(super) fn peer_source(r: &Reader) -> Result<PeerSource, ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum From {
        Static,
        Metal,
        Annotations,
    }
    let packet = r.bool("vip_packet", false)?;
    let from = r.choice(
        "vipr_peers_from",
        &[
            ("static", From::Static),
            ("equinix-metal", From::Metal),
            ("annotations", From::Annotations),
        ],
    )?;
    let annotation = r.opt_string("annotation");
    let url = r.string(
        "vipr_metadata_url",
        "https://metadata.platformequinix.com/metadata",
    );
    let interval = r.secs("vipr_metadata_interval", 60, 1, 86400)?;
    if packet && from.is_some_and(|f| f != From::Metal) {
        return Err(ConfigError::Conflict(format!(
            "{} and {} contradict each other: vip_packet means peers from the Equinix Metal metadata",
            r.show("vip_packet"),
            r.show("vipr_peers_from")
        )));
    }
    let from = from.unwrap_or(if packet {
        From::Metal
    } else if annotation.is_some() {
        From::Annotations
    } else {
        From::Static
    });
    match (from, annotation) {
        (From::Annotations, Some(prefix)) => Ok(PeerSource::Annotations { prefix }),
        (From::Annotations, None) => Err(r.err(
            "vipr_peers_from",
            "annotations needs annotation=<prefix>, e.g. metal.equinix.com",
        )),
        (From::Metal, Some(_)) => Err(ConfigError::Conflict(format!(
            "{} and peers from the Equinix Metal metadata ({}) exclude each other: choose one peer source",
            r.show("annotation"),
            if packet { r.show("vip_packet") } else { r.show("vipr_peers_from") }
        ))),
        (From::Metal, None) => Ok(PeerSource::EquinixMetal { url, interval }),
        (From::Static, Some(_)) => Err(ConfigError::Conflict(format!(
            "{} and {} contradict each other: annotation takes peers from node annotations",
            r.show("annotation"),
            r.show("vipr_peers_from")
        ))),
        (From::Static, None) => Ok(PeerSource::Static),
    }
}
