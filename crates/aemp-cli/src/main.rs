#[allow(dead_code)] // until main.rs dispatches to rc_commands::run
mod rc_commands;

fn main() {}
