//! Serde support: typed messages to and from [`crate::Value`]. Work in progress.
