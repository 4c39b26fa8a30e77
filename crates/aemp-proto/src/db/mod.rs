//! The global database state machine (PROTOCOL.md §6.6). Work in progress.
