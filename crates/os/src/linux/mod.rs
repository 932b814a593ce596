//! Linux: the native packet source and socket table.

pub mod afpacket;
pub mod process;
pub mod sock_diag;
pub mod sockets;
