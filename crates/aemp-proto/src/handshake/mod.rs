//! The AEMP handshake (PROTOCOL.md §2). Work in progress.
