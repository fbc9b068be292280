//! providers: sources of BGP peers (static config, node annotations, Equinix Metal metadata).
//! Skeleton: the providers land with their own issue. Depends on `bgp` types only.

pub use bgp::PeerConfig;
