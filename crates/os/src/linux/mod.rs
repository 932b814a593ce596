//! Linux: the native packet source and socket table.

pub mod afpacket;
pub mod caps;
pub mod process;
pub mod signals;
pub mod sock_diag;
pub mod sockets;
