//! vipr: the daemon. This file will own the CLI, tracing, signals and task wiring.
//! (Skeleton: the daemon lands with its own issue; see README.)

fn main() {
    println!("vipr {}", env!("CARGO_PKG_VERSION"));
}
