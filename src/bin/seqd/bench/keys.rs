//! Which key each request goes to: a seeded PRNG (SplitMix64) and the workspace
//! distributions (uniform, and zipfian after Gray et al., as YCSB generates it).

use super::args::{Distribution, Plan};

/// SplitMix64 (Steele, Lea, Flood): tiny, fast, and every seed gives a good stream.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n >= 1`), by multiply-high; the bias is below 2^-32 for the
    /// ranges used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipfian ranks `0..n` (rank 0 the most likely) with skew `theta` in (0, 1): YCSB's
/// `ZipfianGenerator`, from Gray et al., "Quickly Generating Billion-Record Synthetic
/// Databases" (SIGMOD 1994). O(1) per sample after computing `zeta(n)` once.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: f64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    items: u64,
}

impl Zipfian {
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let n = items as f64;
        let zetan = zeta(items, theta);
        let zeta2 = zeta(2, theta);
        let eta = if items <= 2 {
            0.0
        } else {
            (1.0 - (2.0 / n).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        };
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
            items,
        }
    }

    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 || self.items == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) || self.items == 2 {
            return 1;
        }
        let rank = (self.n * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.items - 1)
    }
}

/// `sum(i^-theta, i = 1..=n)`: exact up to a million terms, Euler–Maclaurin beyond (the
/// relative error is far below what a benchmark can notice).
fn zeta(n: u64, theta: f64) -> f64 {
    const EXACT: u64 = 1_000_000;
    let m = n.min(EXACT);
    let mut sum: f64 = (1..=m).map(|i| (i as f64).powf(-theta)).sum();
    if n > m {
        let (a, b) = (m as f64, n as f64);
        sum += (b.powf(1.0 - theta) - a.powf(1.0 - theta)) / (1.0 - theta)
            + (b.powf(-theta) - a.powf(-theta)) / 2.0;
    }
    sum
}

/// Picks `(workspace, sequence)` for each request: the workspace by the plan's
/// distribution, the sequence uniformly.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    workspaces: u64,
    seqs: u64,
    zipf: Option<Zipfian>,
}

impl KeyChooser {
    pub fn new(plan: &Plan) -> KeyChooser {
        let a = &plan.args;
        let zipf = (a.distribution == Distribution::Zipfian && a.workspaces > 1)
            .then(|| Zipfian::new(a.workspaces, a.zipf_theta));
        KeyChooser {
            workspaces: a.workspaces,
            seqs: a.seqs,
            zipf,
        }
    }

    /// The next key as an index `ws * seqs + seq`.
    #[inline]
    pub fn next(&self, rng: &mut SplitMix64) -> u64 {
        let ws = match &self.zipf {
            Some(z) => z.sample(rng),
            None if self.workspaces == 1 => 0,
            None => rng.below(self.workspaces),
        };
        let seq = if self.seqs == 1 {
            0
        } else {
            rng.below(self.seqs)
        };
        ws * self.seqs + seq
    }

    /// `(workspace, sequence)` of a key index.
    pub fn split(&self, key: u64) -> (u64, u64) {
        (key / self.seqs, key % self.seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 (the reference implementation's).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            seen[r.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let z = Zipfian::new(1000, 0.99);
        let mut r = SplitMix64::new(1);
        let mut counts = vec![0u64; 1000];
        for _ in 0..200_000 {
            counts[z.sample(&mut r) as usize] += 1;
        }
        // Rank 0 takes ~13 % at theta 0.99 over 1000 items; ranks fall off as 1/i^theta.
        let p0 = counts[0] as f64 / 200_000.0;
        assert!((0.10..0.17).contains(&p0), "p0 = {p0}");
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
        assert!(counts[500..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zeta_tail_approximation_is_close() {
        let exact: f64 = (1..=3_000_000u64).map(|i| (i as f64).powf(-0.99)).sum();
        let approx = zeta(3_000_000, 0.99);
        assert!((exact - approx).abs() / exact < 1e-9, "{exact} vs {approx}");
    }
}
