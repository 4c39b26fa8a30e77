//! JSON and CBOR framing (PROTOCOL.md §2.7). Work in progress.
