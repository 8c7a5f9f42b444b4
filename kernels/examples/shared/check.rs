//! What the GPU check examples (`scorer_check`, `alignment_check`) share: the models' seeded
//! random source, their LayerNorms, percentiles and the closing `ok|FAILED` line.

use splatfleet_kernels::scorer::model::LayerNorm;

/// splitmix64: the models' random source, the same on every platform.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[-scale, scale)`.
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * scale
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }
    pub fn around(&mut self, n: usize, centre: f32, spread: f32) -> Vec<f32> {
        (0..n).map(|_| centre + self.uniform(spread)).collect()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn norm(r: &mut Rng, d: usize, eps: f32) -> LayerNorm {
    LayerNorm {
        weight: r.around(d, 1.0, 0.2),
        bias: r.vec(d, 0.05),
        eps,
    }
}

pub fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// Prints `{name}: ok` or `{name}: FAILED` (after the error, if any) and exits 1 on failure.
pub fn finish(name: &str, result: Result<bool, String>) {
    match result {
        Ok(true) => println!("{name}: ok"),
        Ok(false) => {
            println!("{name}: FAILED");
            std::process::exit(1);
        }
        Err(e) => {
            println!("error: {e}\n{name}: FAILED");
            std::process::exit(1);
        }
    }
}
