//! Benchmark of the splat codecs (a documented command, not a test; see `common/BENCH.md`):
//!
//! ```text
//! cargo run --release -p splatfleet-common --example splat_bench -- [POINTS] [OUT_DIR]
//! ```
//!
//! Builds a random 500k-gaussian SH0 and SH3 model (with `nx ny nz`, as 3DGS trainers write
//! them), then times on one thread: PLY write, PLY parse from bytes into a fresh `Splat` with
//! the validity statistics, the same parse into a reused `Splat`, SPZ encode and SPZ decode.
//! The PLY files are left in OUT_DIR (default `/tmp`) for `common/bench/plyfile_bench.py`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use splatfleet_common::splat::{
    decode_spz, encode_spz, read_ply, read_ply_into, spz_payload, write_ply_into, PlyLimits, Splat,
    SpzLimits,
};

fn random_splat(rng: &mut StdRng, n: usize, degree: u8) -> Splat {
    let mut s = Splat::zeroed(n, degree, true);
    for i in 0..n {
        s.positions[i] = [0; 3].map(|_| rng.random_range(-1.0..1.0));
        s.sh_dc[i] = [0; 3].map(|_| rng.random_range(-2.0..2.0));
        s.opacities[i] = rng.random_range(-6.0..8.0);
        s.log_scales[i] = [0; 3].map(|_| rng.random_range(-9.0..-3.0));
        s.rotations[i] = [0; 4].map(|_| rng.random_range(-1.0..1.0));
    }
    for v in s.sh_rest.iter_mut() {
        *v = rng.random_range(-0.3..0.3);
    }
    s
}

/// Runs `f` `reps` times and returns the fastest and the median duration.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut v: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    v.sort();
    (v[0], v[v.len() / 2])
}

fn report(what: &str, bytes: usize, (best, median): (Duration, Duration)) {
    let gbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    println!(
        "{what:<44} {:>9.2} ms best {:>9.2} ms median   {:>6.2} GB/s best {:>6.2} GB/s median  ({:.1} MB)",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        gbs(best),
        gbs(median),
        bytes as f64 / 1e6
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(500_000);
    let out_dir = args.next().unwrap_or_else(|| "/tmp".into());
    let reps = 25;
    let mut rng = StdRng::seed_from_u64(17);
    for degree in [0u8, 3] {
        let splat = random_splat(&mut rng, n, degree);
        let mut ply = Vec::new();
        write_ply_into(&splat, &mut ply)?;
        let path = format!("{out_dir}/splat_bench_sh{degree}.ply");
        std::fs::write(&path, &ply)?;
        println!(
            "== {n} gaussians, SH{degree}, PLY {} bytes -> {path}",
            ply.len()
        );

        // Reference points for "memory speed" on this machine: copying the PLY's bytes into a
        // reused buffer, and first-touching as many fresh bytes (page faults + kernel zeroing),
        // which any parse into newly allocated arrays pays.
        let mut copy = vec![0u8; ply.len()];
        report(
            "memcpy of the PLY into a reused buffer",
            ply.len(),
            time(reps, || copy.copy_from_slice(&ply)),
        );
        report(
            "first touch of as many fresh bytes",
            ply.len(),
            time(reps, || {
                let mut v = vec![0u8; ply.len()];
                for b in v.iter_mut().step_by(4096) {
                    *b = 1;
                }
                v.len()
            }),
        );
        let limits = PlyLimits::default();
        let parsed = read_ply(&ply, &limits)?;
        assert_eq!(parsed.splat, splat);
        report(
            "PLY parse from bytes + stats (fresh Splat)",
            ply.len(),
            time(reps, || read_ply(&ply, &limits).map(|d| d.report.count)),
        );
        let mut reuse = Splat::default();
        report(
            "PLY parse from bytes + stats (reused Splat)",
            ply.len(),
            time(reps, || {
                read_ply_into(&ply, &limits, &mut reuse).map(|r| r.0.count)
            }),
        );
        let mut out = Vec::new();
        report(
            "PLY write (reused buffer)",
            ply.len(),
            time(reps, || write_ply_into(&splat, &mut out)),
        );
        report(
            "PLY write (fresh buffer)",
            ply.len(),
            time(reps, || {
                let mut o = Vec::new();
                write_ply_into(&splat, &mut o).map(|_| o.len())
            }),
        );
        let spz = encode_spz(&splat)?;
        println!(
            "   SPZ {} bytes ({:.1}x smaller)",
            spz.len(),
            ply.len() as f64 / spz.len() as f64
        );
        report(
            "SPZ encode (v2, zstd level 1), PLY bytes/s",
            ply.len(),
            time(reps, || encode_spz(&splat).map(|b| b.len())),
        );
        report(
            "  of which quantisation (payload, no zstd)",
            ply.len(),
            time(reps, || spz_payload(&splat).map(|b| b.len())),
        );
        let spz_limits = SpzLimits::default();
        report(
            "SPZ decode, PLY bytes/s",
            ply.len(),
            time(reps, || {
                decode_spz(&spz, &spz_limits).map(|d| d.splat.len())
            }),
        );
        let r = &parsed.report;
        println!(
            "   report: count {} non-finite {} low-opacity {:.3} identity {} hard-zero {:?}",
            r.count,
            r.non_finite.total(),
            r.low_opacity_fraction(),
            r.all_rotations_identity,
            r.hard_zero()
        );
    }
    Ok(())
}
