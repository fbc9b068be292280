//! Which API server the daemon talks to when its kubeconfig names the control-plane VIP:
//! the pure decision ([`api_override`]) that [`super::client`] applies. No I/O here.

use std::path::Path;

/// kubeadm's kubeconfigs on a control-plane node: they name the control-plane endpoint.
const KUBEADM_CONFS: [&str; 2] = [
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
];

/// Where a kubeconfig's client should connect instead of its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOverride {
    /// The URL connected to.
    pub url: hyper::Uri,
    /// The name the server's certificate is checked against (the kubeconfig's host, which
    /// its certificate names), when it differs from the URL's.
    pub tls_server_name: Option<String>,
}

/// Which API server a daemon reading kubeconfig `path` (whose server is `server`) talks
/// to: `kubernetes_addr` when given; with `cp_enable`, the local API server
/// (`https://127.0.0.1:<port>`) when the kubeconfig is kubeadm's admin.conf or
/// super-admin.conf or its server is one of the control-plane VIPs; else the kubeconfig's.
///
/// kube-vip v1.2.3 (`pkg/manager/manager.go`, lines 111-160) does the same for
/// `/etc/kubernetes/admin.conf` (where its manifests mount admin.conf or super-admin.conf):
/// it connects to `kubernetes:<port>`, which its pod's `hostAliases` map to 127.0.0.1
/// (`pkg/kubevip/config_generator.go`), and to `kubernetes_addr` when set. On the first
/// kubeadm node the kubeconfig names the VIP, which nobody holds before the daemon's
/// election, so the local API server is the only one reachable. vipr also goes local when
/// the kubeconfig names a VIP at another path, and checks the certificate against the
/// kubeconfig's host (the name it was issued for) instead of a host alias.
pub fn api_override(
    path: &Path,
    server: &hyper::Uri,
    cp: &crate::config::ControlPlane,
    kubernetes_addr: Option<&hyper::Uri>,
) -> Option<ApiOverride> {
    if let Some(a) = kubernetes_addr {
        return Some(ApiOverride {
            url: a.clone(),
            tls_server_name: None,
        });
    }
    let host = server.host()?.trim_start_matches('[').trim_end_matches(']');
    let names_vip = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| cp.vips.contains(&ip));
    let kubeadm = KUBEADM_CONFS.iter().any(|p| Path::new(p) == path);
    if !cp.enabled || !(kubeadm || names_vip) {
        return None;
    }
    let url = format!("https://127.0.0.1:{}", cp.port).parse().ok()?;
    Some(ApiOverride {
        url,
        tls_server_name: Some(host.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ControlPlane;

    fn cp(enabled: bool, vips: &[&str]) -> ControlPlane {
        let env: std::collections::HashMap<&str, String> = [
            ("bgp_enable", "true".to_string()),
            ("bgp_peers", "192.0.2.1:65000::false".into()),
            ("svc_enable", "true".into()),
            ("cp_enable", enabled.to_string()),
            ("address", vips.join(",")),
        ]
        .into_iter()
        .collect();
        let mut l = crate::config::Layers::default();
        l.add_env(|n| env.get(n).cloned()).unwrap();
        crate::config::Config::from_layers(&l, "n")
            .unwrap()
            .control_plane
    }

    fn uri(s: &str) -> hyper::Uri {
        s.parse().unwrap()
    }

    /// The first kubeadm node: the kubeconfig names the VIP (or kubeadm's endpoint name),
    /// nobody holds the VIP yet, so the daemon talks to the local API server, checking its
    /// certificate against the name the kubeconfig uses.
    #[test]
    fn control_plane_nodes_talk_to_the_local_api_server() {
        let vip = uri("https://192.0.2.10:6443");
        let local = |name: &str| {
            Some(ApiOverride {
                url: uri("https://127.0.0.1:6443"),
                tls_server_name: Some(name.into()),
            })
        };
        let c = cp(true, &["192.0.2.10", "2001:db8::10"]);
        let other = Path::new("/tmp/kubeconfig");
        assert_eq!(api_override(other, &vip, &c, None), local("192.0.2.10"));
        assert_eq!(
            api_override(other, &uri("https://[2001:db8::10]:6443"), &c, None),
            local("2001:db8::10")
        );
        // kubeadm's kubeconfigs go local whatever they name (kube-vip's rule).
        let name = uri("https://k8s-api.example:6443");
        for p in KUBEADM_CONFS {
            assert_eq!(
                api_override(Path::new(p), &name, &c, None),
                local("k8s-api.example")
            );
        }
        // Another kubeconfig naming another server, or no control-plane VIP: as written.
        assert_eq!(api_override(other, &name, &c, None), None);
        assert_eq!(
            api_override(
                Path::new(KUBEADM_CONFS[0]),
                &vip,
                &cp(false, &["192.0.2.10"]),
                None
            ),
            None
        );
        // kubernetes_addr wins, also over the in-VIP rule.
        let addr = uri("https://10.0.0.5:6443");
        assert_eq!(
            api_override(other, &vip, &c, Some(&addr)),
            Some(ApiOverride {
                url: addr,
                tls_server_name: None
            })
        );
        // The port is the control plane's.
        let mut c8 = c.clone();
        c8.port = 8443;
        assert_eq!(
            api_override(other, &vip, &c8, None).unwrap().url,
            uri("https://127.0.0.1:8443")
        );
    }
}
