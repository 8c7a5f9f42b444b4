//! Times the CPU reference (decode, render of the validator's 16 views, metrics) on this
//! machine: `cargo run --release -p splatfleet-kernels --example cpu_time [N]`.

#[path = "shared/test_splats.rs"]
mod test_splats;

use std::time::Instant;

use rand::SeedableRng;
use splatfleet_kernels::{render_and_measure_cpu, Rig};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let rig = Rig::validator();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for (kind, splat) in [
        ("random", test_splats::random_splat(n, &mut rng)),
        ("structured", test_splats::structured_splat(n, &mut rng)),
        ("object", test_splats::object_splat(n, &mut rng)),
    ] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            if let Err(err) = render_and_measure_cpu(&splat, &rig) {
                eprintln!("{kind}: {err}");
                return;
            }
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "cpu reference {kind:>10} n={n}: median {:.2} s on {} threads",
            times[1],
            rayon::current_num_threads()
        );
    }
}
