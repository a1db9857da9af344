//! QUIC application close codes (the `error_code` of CONNECTION_CLOSE).

/// An orderly close after DISCONNECT with reason APP_DISCONNECT.
pub const APP_DISCONNECT: u32 = 0x01;
/// An orderly close because the node leaves (graph closed or engine shut down).
pub const LEAVING: u32 = 0x02;
/// The peer sent something this protocol does not allow.
pub const PROTOCOL_ERROR: u32 = 0x10;
/// The CONNECT was refused (a REFUSE frame was sent first when possible).
pub const REFUSED: u32 = 0x11;
/// The handshake (CONNECT / WELCOME) did not finish in time.
pub const HANDSHAKE_TIMEOUT: u32 = 0x12;
/// The local connection handler failed (for example, it panicked).
pub const INTERNAL_ERROR: u32 = 0x13;
/// A close did not complete within the close timeout.
pub const CLOSE_TIMEOUT: u32 = 0x14;
