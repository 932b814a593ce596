use std::fmt;

/// The protocol layer an error or anomaly belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Layer {
    Ethernet,
    Vlan,
    Mpls,
    Pppoe,
    LinuxSll,
    LinuxSll2,
    Null,
    Nflog,
    Ipv4,
    Ipv6,
    Ipv6Ext,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Sctp,
    Gre,
    Vxlan,
    Geneve,
    GtpU,
    Teredo,
    Capture,
    Dns,
    Tls,
    Quic,
    Http,
    Stun,
    Dhcp,
    App,
}

impl Layer {
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Mpls => "mpls",
            Layer::Pppoe => "pppoe",
            Layer::LinuxSll => "linux_sll",
            Layer::LinuxSll2 => "linux_sll2",
            Layer::Null => "null",
            Layer::Nflog => "nflog",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Ext => "ipv6_ext",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
            Layer::Icmpv6 => "icmpv6",
            Layer::Sctp => "sctp",
            Layer::Gre => "gre",
            Layer::Vxlan => "vxlan",
            Layer::Geneve => "geneve",
            Layer::GtpU => "gtp_u",
            Layer::Teredo => "teredo",
            Layer::Capture => "capture",
            Layer::Dns => "dns",
            Layer::Tls => "tls",
            Layer::Quic => "quic",
            Layer::Http => "http",
            Layer::Stun => "stun",
            Layer::Dhcp => "dhcp",
            Layer::App => "app",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a view could not be made. Says where (the layer) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Fewer bytes than the header needs.
    Truncated { layer: Layer, need: usize, have: usize },
    /// A field holds a value the layer cannot have (`what` names the field and the rule).
    Malformed { layer: Layer, what: &'static str },
}

impl Error {
    pub const fn layer(&self) -> Layer {
        match self {
            Error::Truncated { layer, .. } | Error::Malformed { layer, .. } => *layer,
        }
    }

    /// A short stable name for counting, e.g. `ipv4_truncated` or `tcp_malformed`.
    pub fn kind(&self) -> (&'static str, Layer) {
        match self {
            Error::Truncated { layer, .. } => ("truncated", *layer),
            Error::Malformed { layer, .. } => ("malformed", *layer),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { layer, need, have } => {
                write!(f, "{layer}: truncated, need {need} bytes, have {have}")
            }
            Error::Malformed { layer, what } => write!(f, "{layer}: malformed, {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Bounds check used by every view: `Ok(())` when `buf` has at least `need` bytes.
#[inline]
pub(crate) fn need(layer: Layer, buf: &[u8], need: usize) -> Result<(), Error> {
    if buf.len() < need {
        Err(Error::Truncated {
            layer,
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}
